// Matrix Authentication Service (matrix:auth): its pinned release tarball, its config (secrets in
// files of their own), its unit, and what Synapse and nginx need of it. The shapes follow MAS's
// own docs: setup/homeserver, setup/reverse-proxy, the config reference, syn2mas.
import { stringify } from "yaml";
import { MAS_CONFIG_PATH } from "./preflight";
import { aptInstall, downloadChecked, ensureDir, restartOnRevision, script, sha256, shq } from "./shell";
import { SYNAPSE_LISTEN, SYNAPSE_SERVICE, synapseUnitHardening, untilHealthy } from "./synapseBase";

const ETC = "/etc/matrix-authentication-service";
const SECRETS = `${ETC}/secrets`;
export const MAS_PATHS = {
    etc: ETC,
    config: MAS_CONFIG_PATH,
    /** Root's and MAS's only: every secret MAS reads, each a file of its own. */
    secrets: SECRETS,
    /** Made on the host, never leaving it: the encryption key and the signing keys. */
    encryption: `${SECRETS}/encryption`,
    keys: `${SECRETS}/keys`,
    /** From the stack (secret state): the database password, the secret shared with Synapse, the admin client's. */
    databasePassword: `${SECRETS}/database-password`,
    synapseSecret: `${SECRETS}/synapse-shared-secret`,
    adminClientSecret: `${SECRETS}/admin-client-secret`,
    /** Each release unpacked in a folder of its version and checksum. */
    releases: "/opt/matrix-authentication-service",
    cache: "/var/cache/matrix-pulumi/mas",
    state: "/var/lib/matrix-authentication-service",
    unit: "/etc/systemd/system/matrix-authentication-service.service",
} as const;
export const MAS_USER = "matrix-mas";
export const MAS_SERVICE = "matrix-authentication-service";
/** Loopback listeners: `web` behind nginx; `internal` (health, admin API) never proxied. */
export const MAS_LOOPBACK = { web: 8090, internal: 8091 } as const;
/** Where the homeserver vhost serves MAS (README: Auth (MAS): why a path and not a host name). */
export const MAS_PUBLIC_PATH = "/auth";
/** The compatibility routes MAS's reverse-proxy doc lists: old-style clients' login, logout, refresh. */
export const MAS_COMPAT_LOCATION = "~ ^/_matrix/client/[^/]+/(login|logout|refresh)(/|$)";
/** The client the program's own tools use for MAS's admin API (client credentials, urn:mas:admin). */
export const MAS_ADMIN_CLIENT_ID = "01JMATR1XP00000000000ADM1N";
export const MAS_APT_PACKAGES = ["curl", "ca-certificates", "openssl"];

const ROOT = { owner: "root", group: "root" } as const;
const READ_BY_MAS = { mode: "0640", owner: "root", group: MAS_USER } as const;
export const MAS_FILE_MODES = {
    config: READ_BY_MAS,
    secret: READ_BY_MAS,
    unit: { mode: "0644", ...ROOT },
} as const;

/** A pinned release tarball (matrix:auth.mas). */
export interface MasRelease {
    version: string;
    url: string;
    sha256: string;
}

/** The unpacked release: named by version and checksum, so a new one never replaces a running one. */
export function masReleaseDir(r: Omit<MasRelease, "url">): string {
    return `${MAS_PATHS.releases}/v${r.version}-${r.sha256.slice(0, 12)}`;
}

/** MAS's public base (its OAuth issuer): the homeserver host, under /auth/. */
export function masPublicBase(homeserverHost: string): string {
    return `https://${homeserverHost}${MAS_PUBLIC_PATH}/`;
}

/** Where Synapse reaches MAS (introspection, its admin calls): the web listener on loopback. */
export function masLocalEndpoint(): string {
    return `http://127.0.0.1:${MAS_LOOPBACK.web}${MAS_PUBLIC_PATH}/`;
}

export interface MasSettings {
    serverName: string;
    homeserverHost: string;
    release: Omit<MasRelease, "url">;
    database: { host: string; port: number; name: string; user: string };
    /** synapse.enableRegistration: MAS's password registration (no e-mail: the program sets up no SMTP for it). */
    registration: boolean;
    registrationTokenRequired: boolean;
}

/** config.yaml: no secret in it; each is a file under MAS_PATHS.secrets. */
export function renderMasConfig(s: MasSettings): string {
    const release = masReleaseDir(s.release);
    const config = {
        http: {
            public_base: masPublicBase(s.homeserverHost),
            // nginx on this host is the only proxy.
            trusted_proxies: ["127.0.0.1/32", "::1/128"],
            listeners: [
                {
                    name: "web",
                    prefix: MAS_PUBLIC_PATH,
                    resources: [
                        // /auth/health too: what npm run self-check reads through nginx.
                        { name: "health" },
                        { name: "discovery" },
                        { name: "human" },
                        { name: "oauth" },
                        { name: "compat" },
                        { name: "graphql" },
                        { name: "assets", path: `${release}/share/assets/` },
                    ],
                    binds: [{ host: "127.0.0.1", port: MAS_LOOPBACK.web }],
                },
                {
                    name: "internal",
                    resources: [{ name: "health" }, { name: "adminapi" }],
                    binds: [{ host: "127.0.0.1", port: MAS_LOOPBACK.internal }],
                },
            ],
        },
        database: {
            host: s.database.host,
            port: s.database.port,
            username: s.database.user,
            password_file: MAS_PATHS.databasePassword,
            database: s.database.name,
        },
        matrix: {
            kind: "synapse",
            homeserver: s.serverName,
            endpoint: `http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}/`,
            secret_file: MAS_PATHS.synapseSecret,
        },
        secrets: { encryption_file: MAS_PATHS.encryption, keys_dir: MAS_PATHS.keys },
        // bcrypt first: the hashes syn2mas brings over from Synapse (users keep their passwords);
        // new and changed passwords are hashed with argon2id and take over on each next login.
        passwords: {
            enabled: true,
            schemes: [
                { version: 1, algorithm: "bcrypt", unicode_normalization: true },
                { version: 2, algorithm: "argon2id" },
            ],
        },
        account: {
            password_registration_enabled: s.registration,
            password_registration_email_required: false,
            password_registration_token_required: s.registration && s.registrationTokenRequired,
        },
        templates: {
            path: `${release}/share/templates/`,
            assets_manifest: `${release}/share/manifest.json`,
            translations_path: `${release}/share/translations/`,
        },
        policy: {
            wasm_module: `${release}/share/policy.wasm`,
            data: { admin_clients: [MAS_ADMIN_CLIENT_ID] },
        },
        clients: [
            {
                client_id: MAS_ADMIN_CLIENT_ID,
                client_auth_method: "client_secret_basic",
                client_secret_file: MAS_PATHS.adminClientSecret,
            },
        ],
    };
    return "# Managed by matrix-pulumi. Its secrets are files in " + SECRETS + ".\n" + stringify(config);
}

export function renderMasUnit(s: { release: string }): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        "Description=Matrix Authentication Service",
        "After=network-online.target postgresql.service",
        "Wants=network-online.target",
        "",
        "[Service]",
        `User=${MAS_USER}`,
        `Group=${MAS_USER}`,
        `WorkingDirectory=${s.release}`,
        `ExecStart=${s.release}/mas-cli server --config ${MAS_PATHS.config}`,
        "Restart=on-failure",
        "RestartSec=3",
        ...synapseUnitHardening(),
        `ReadWritePaths=${MAS_PATHS.state}`,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

/** Its user and folders, and the secrets made on the host (kept across runs: never replaced). */
export function renderMasDirsScript(opts: { user?: string } = {}): { create: string; delete: string } {
    const secretDir = { mode: "0750", owner: "root", group: MAS_USER } as const;
    return {
        create: script(
            [
                ...aptInstall(MAS_APT_PACKAGES),
                `id -u ${MAS_USER} >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${MAS_USER}`,
                ...ensureDir(MAS_PATHS.etc, { mode: "0755", ...ROOT }),
                ...ensureDir(MAS_PATHS.secrets, secretDir),
                ...ensureDir(MAS_PATHS.keys, secretDir),
                ...ensureDir(MAS_PATHS.releases, { mode: "0755", ...ROOT }),
                ...ensureDir(MAS_PATHS.state, { mode: "0750", owner: MAS_USER, group: MAS_USER }),
                // The encryption key (32 bytes, hex) and the signing keys MAS's tokens carry (RSA for
                // RS256, which every client accepts; P-256 for ES256): made once, here, by openssl.
                "umask 027",
                `if [ ! -s ${shq(MAS_PATHS.encryption)} ]; then`,
                // Exactly 64 hex digits, no newline: MAS reads the file's bytes as they are.
                `  printf '%s' "$(openssl rand -hex 32)" > ${shq(MAS_PATHS.encryption + ".part")}`,
                `  mv ${shq(MAS_PATHS.encryption + ".part")} ${shq(MAS_PATHS.encryption)}; echo "made the encryption key"`,
                "fi",
                `if [ ! -s ${shq(MAS_PATHS.keys + "/rsa.pem")} ]; then`,
                `  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${shq(MAS_PATHS.keys + "/rsa.pem.part")} 2>/dev/null`,
                `  mv ${shq(MAS_PATHS.keys + "/rsa.pem.part")} ${shq(MAS_PATHS.keys + "/rsa.pem")}; echo "made the RSA signing key"`,
                "fi",
                `if [ ! -s ${shq(MAS_PATHS.keys + "/ec-p256.pem")} ]; then`,
                `  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${shq(MAS_PATHS.keys + "/ec-p256.pem.part")} 2>/dev/null`,
                `  mv ${shq(MAS_PATHS.keys + "/ec-p256.pem.part")} ${shq(MAS_PATHS.keys + "/ec-p256.pem")}; echo "made the P-256 signing key"`,
                "fi",
                `chown root:${MAS_USER} ${shq(MAS_PATHS.encryption)} ${shq(MAS_PATHS.keys)}/*.pem`,
                `chmod 0640 ${shq(MAS_PATHS.encryption)} ${shq(MAS_PATHS.keys)}/*.pem`,
            ],
            opts,
        ),
        // MAS's config, keys and state stay: its database holds every account, and the preflight
        // reads the config's presence to refuse turning it off by accident.
        delete: script([`echo "MAS's files and database are kept (README: Auth (MAS))"`], opts),
    };
}

/** Download the tarball, check its SHA-256 before anything else, unpack it into its own folder. */
export function renderMasReleaseScript(r: MasRelease, opts: { user?: string } = {}): string {
    const dest = masReleaseDir(r);
    const part = `${MAS_PATHS.cache}/mas-cli-v${r.version}.part`;
    return script(
        [
            `if [ -x ${shq(dest + "/mas-cli")} ]; then echo "MAS v${r.version} already in place"; exit 0; fi`,
            ...ensureDir(MAS_PATHS.cache, { mode: "0755", ...ROOT }),
            ...downloadChecked({
                url: r.url,
                sha256: r.sha256,
                part,
                what: "MAS",
                key: "matrix:auth.mas.sha256",
                done: "installed",
            }),
            `tmp=$(mktemp -d ${shq(MAS_PATHS.releases + "/.install.XXXXXX")})`,
            `tar -xzf ${shq(part)} -C "$tmp" --no-same-owner`,
            `for f in mas-cli share/policy.wasm share/manifest.json share/templates share/translations share/assets; do`,
            `  if [ ! -e "$tmp/$f" ]; then rm -rf "$tmp" ${shq(part)}; echo "the tarball from "${shq(r.url)}" has no $f: is it MAS's mas-cli-x86_64-linux.tar.gz?" >&2; exit 1; fi`,
            "done",
            `chmod -R u=rwX,go=rX "$tmp" && chmod 0755 "$tmp/mas-cli" "$tmp"`,
            `mv -T "$tmp" ${shq(dest)}`,
            `rm -f ${shq(part)}`,
            `echo "MAS v${r.version} installed"`,
        ],
        opts,
    );
}

export interface MasServiceSettings {
    /** Hash over the config, the secrets' files and the unit: a new one restarts MAS. */
    revision: string;
    release: string;
    /** Keep only this release folder. */
    keepReleases: string[];
    /** Synapse's config files (homeserver.yaml and the one with its database), for syn2mas. */
    synapseConfigs: string[];
}

/**
 * Check the config, run syn2mas once if Synapse has accounts and MAS has none (Synapse stopped
 * meanwhile: its own step starts it again with MAS in charge), (re)start MAS, wait until healthy.
 */
export function renderMasServiceScript(s: MasServiceSettings, opts: { user?: string } = {}): string {
    const mas = (args: string) =>
        `runuser -u ${MAS_USER} -- ${shq(s.release + "/mas-cli")} ${args} --config ${shq(MAS_PATHS.config)}`;
    const migrated = `${MAS_PATHS.state}/syn2mas.done`;
    const synapseConfigs = s.synapseConfigs.map((c) => `--synapse-config ${shq(c)}`).join(" ");
    // As root: it reads Synapse's config (its database password) and MAS's.
    const syn2mas = (sub: string) =>
        `${shq(s.release + "/mas-cli")} syn2mas ${sub} ${synapseConfigs} --config ${shq(MAS_PATHS.config)}`;
    const logs = [
        `echo "${MAS_SERVICE} did not answer on loopback within 120 s; its last log lines:" >&2`,
        `journalctl -u ${MAS_SERVICE} -n 40 --no-pager >&2 || true`,
    ];
    return script(
        [
            `cd ${shq(s.release)}`,
            `if ! out=$(${mas("config check")} 2>&1); then echo "MAS refuses ${MAS_PATHS.config}:" >&2; echo "$out" >&2; exit 1; fi`,
            // The schema first (idempotent), then the config's clients; their logs only when they fail.
            `if ! out=$(${mas("database migrate")} 2>&1); then echo "$out" >&2; exit 1; fi`,
            `if ! out=$(${mas("config sync")} 2>&1); then echo "$out" >&2; exit 1; fi`,
            // syn2mas: once, before MAS serves anyone, over a Synapse that ran before (its config
            // exists): accounts, password hashes, devices and access tokens move to MAS. Its check
            // first: errors (exit 10: an SSO provider MAS lacks, say) stop here with its report;
            // warnings (exit 11) are shown and the migration goes on.
            `if [ ! -e ${shq(migrated)} ]; then`,
            `  if [ -e ${shq(s.synapseConfigs[0]!)} ]; then`,
            `    status=0; report=$(${syn2mas("check")} 2>&1) || status=$?`,
            '    if [ "$status" != 0 ] && [ "$status" != 11 ]; then',
            `      echo "syn2mas refuses to move Synapse's accounts to MAS (exit $status):" >&2; echo "$report" >&2; exit 1`,
            "    fi",
            '    if [ "$status" = 11 ]; then echo "syn2mas warns:"; echo "$report"; fi',
            `    echo "moving Synapse's accounts, passwords and devices to MAS (syn2mas); Synapse is stopped meanwhile"`,
            `    systemctl stop ${SYNAPSE_SERVICE}`,
            `    ${syn2mas("migrate")}`,
            "  fi",
            `  touch ${shq(migrated)}`,
            "fi",
            "systemctl daemon-reload",
            `systemctl enable ${MAS_SERVICE} >/dev/null 2>&1`,
            ...restartOnRevision(MAS_SERVICE, `${MAS_PATHS.state}/revision`, sha256(s.revision), "MAS"),
            ...untilHealthy(`http://127.0.0.1:${MAS_LOOPBACK.internal}/health`, 120, logs),
            `for old in ${shq(MAS_PATHS.releases)}/v*; do`,
            `  case "$old" in ${s.keepReleases.map(shq).join("|")}) ;; *) rm -rf "$old"; echo "removed \${old##*/}" ;; esac`,
            "done",
        ],
        opts,
    );
}

/** On delete (auth turned off with allowDisable, or destroy): stopped and disabled; its files stay. */
export function renderMasStopScript(opts: { user?: string } = {}): string {
    return script(
        [`systemctl disable --now ${MAS_SERVICE} 2>/dev/null || true`, `rm -f ${shq(MAS_PATHS.state + "/revision")}`],
        opts,
    );
}

/** homeserver.yaml keys for MAS (its setup/homeserver doc), with the shared secret in the secrets file. */
export function synapseMasConfig(secret: string): Record<string, unknown> {
    return {
        matrix_authentication_service: { enabled: true, endpoint: masLocalEndpoint(), secret },
    };
}

/** Keys of homeserver.yaml proper with MAS in charge: no password login, QR-code login (MSC4108). */
export function synapseMasSettings(extraConfig: Record<string, unknown>): Record<string, unknown> {
    const experimental = (extraConfig.experimental_features ?? {}) as Record<string, unknown>;
    return {
        password_config: { enabled: false },
        enable_registration: false,
        experimental_features: { ...experimental, msc4108_enabled: true },
    };
}

/**
 * The admin API as the program's tools use it (Python's standard library: Synapse's host has
 * python3): a client-credentials token for urn:mas:admin with the admin client's secret, read from
 * its file; then the calls. Secrets never enter argv.
 */
const MAS_ADMIN_PY = `
import base64, json, sys, urllib.error, urllib.parse, urllib.request
def token():
    secret = open(${JSON.stringify(MAS_PATHS.adminClientSecret)}).read().strip()
    basic = base64.b64encode((${JSON.stringify(MAS_ADMIN_CLIENT_ID)} + ":" + secret).encode()).decode()
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "urn:mas:admin"}).encode()
    req = urllib.request.Request(${JSON.stringify(`http://127.0.0.1:${MAS_LOOPBACK.web}${MAS_PUBLIC_PATH}/oauth2/token`)}, body,
                                 {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
    return json.load(urllib.request.urlopen(req, timeout=30))["access_token"]
TOKEN = token()
def call(method, path, body=None):
    req = urllib.request.Request(${JSON.stringify(`http://127.0.0.1:${MAS_LOOPBACK.internal}/api/admin/v1`)} + path,
                                 None if body is None else json.dumps(body).encode(),
                                 {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            data = r.read()
            return r.status, (json.loads(data) if data else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
`;

/**
 * Create one account once in MAS (matrix:users, npm run register-user), its password from stdin;
 * an existing account is left as it is, password included (as Synapse's --exists-ok).
 */
export function renderMasUserScript(
    u: { name: string; admin: boolean },
    opts: { user?: string; existsOk?: boolean } = {},
): string {
    const py =
        MAS_ADMIN_PY +
        `
name, admin = sys.argv[1], sys.argv[2] == "admin"
password = sys.stdin.read().strip()
status, found = call("GET", "/users/by-username/" + urllib.parse.quote(name))
if status == 200:
    if sys.argv[3] != "exists-ok":
        sys.exit("M_USER_IN_USE: @%s already exists in MAS" % name)
    print("@%s exists; left as it is" % name)
    sys.exit(0)
if status != 404:
    sys.exit("MAS's admin API answered %s: %s" % (status, found))
status, made = call("POST", "/users", {"username": name})
if status not in (200, 201):
    sys.exit("MAS refused the account %s: %s %s" % (name, status, made))
uid = made["data"]["id"]
status, out = call("POST", "/users/%s/set-password" % uid, {"password": password, "skip_password_check": True})
if status not in (200, 204):
    sys.exit("MAS refused the password of %s: %s %s" % (name, status, out))
if admin:
    status, out = call("POST", "/users/%s/set-admin" % uid, {"admin": True})
    if status != 200:
        sys.exit("MAS refused admin for %s: %s %s" % (name, status, out))
print("registered @%s%s in MAS" % (name, " (admin)" if admin else ""))
`;
    return script(
        [
            ...untilHealthy(`http://127.0.0.1:${MAS_LOOPBACK.internal}/health`, 120, [
                `echo "MAS is not answering on 127.0.0.1:${MAS_LOOPBACK.internal}" >&2`,
            ]),
            `python3 -c ${shq(py)} ${shq(u.name)} ${u.admin ? "admin" : "user"} ${opts.existsOk === false ? "new" : "exists-ok"}`,
        ],
        opts,
    );
}
