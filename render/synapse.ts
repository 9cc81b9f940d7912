// Synapse: homeserver.yaml (no secrets), the secrets file, log config, systemd unit, scripts.
import { stringify } from "yaml";
import { DATABASE_CA_PATH, DATABASE_CLIENT_COMMAND, renderDatabaseClientCommand } from "./databaseHost";
import { synapseMasConfig, synapseMasSettings } from "./mas";
import { synapseRtcConfig } from "./rtc";
import { aptInstall, dirOf, ensureDir, script, shq, writeFile } from "./shell";
import {
    SYNAPSE_LISTEN,
    SYNAPSE_PATHS,
    SYNAPSE_SERVICE,
    SYNAPSE_USER,
    synapseServiceLines,
    synapseUnitHardening,
    untilHealthy,
} from "./synapseBase";
export {
    SYNAPSE_LISTEN,
    SYNAPSE_PATHS,
    SYNAPSE_SERVICE,
    SYNAPSE_USER,
    synapseRevision,
    synapseUnitHardening,
} from "./synapseBase";
import {
    hasWorkers,
    REPLICATION_LISTENER,
    sharedWorkerConfig,
    SYNAPSE_TARGET,
    WORKER_PATHS,
    WORKER_PRESETS,
    WORKER_SERVICE,
    type WorkerCounts,
} from "./workers";

export interface HomeserverSettings {
    serverName: string;
    homeserverHost: string;
    enableRegistration: boolean;
    maxUploadSize: string;
    reportStats: boolean;
    extraConfig: Record<string, unknown>;
    /** A closed or private federation (matrix:federation). Default: open, system CAs. */
    federation?: FederationSettings;
    /** Worker processes (matrix:synapse.workers). Default: none, one process. */
    workers?: WorkerCounts;
    /** How long media is kept after its last access (matrix:synapse.mediaRetention). */
    mediaRetention?: { local: string; remote: string };
    /** A metrics listener on loopback for Prometheus (matrix:monitoring). Default: none. */
    metricsListener?: Record<string, unknown>;
    /** MatrixRTC (matrix:rtc): lk-jwt-service's public URL, announced as the LiveKit transport. */
    rtc?: { serviceUrl: string };
    /** coturn (matrix:turn): the URIs clients get, and how long their credentials last. */
    turn?: { uris: string[]; userLifetime: string };
    /** Matrix Authentication Service signs users in (matrix:auth); its shared secret is in secrets.yaml. */
    auth?: boolean;
}

export interface FederationSettings {
    /** Federation trusts only the CAs in SYNAPSE_PATHS.federationCa. */
    customCa?: boolean;
    /** The only servers federation talks to. */
    allowedServers?: string[];
    /** Private ranges federation may reach. */
    allowedIpRanges?: string[];
}

export interface SynapseSecrets {
    registrationSharedSecret: string;
    macaroonSecretKey: string;
    formSecret: string;
    /** coturn's use-auth-secret (matrix:turn). Default: none. */
    turnSharedSecret?: string;
    /** The secret shared with Matrix Authentication Service (matrix:auth). Default: none. */
    masSharedSecret?: string;
    database: { name: string; user: string; password: string; host: string; port: number; tls?: boolean };
}

/** Sort keys at every depth so the same settings always give the same bytes (they feed diffs). */
function sorted(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(sorted);
    if (value && typeof value === "object") {
        return Object.fromEntries(
            Object.keys(value)
                .sort()
                .map((k) => [k, sorted((value as Record<string, unknown>)[k])]),
        );
    }
    return value;
}

function yamlFile(header: string, value: unknown): string {
    return `# ${header}\n` + stringify(sorted(value), { lineWidth: 0 });
}

/** homeserver.yaml: everything but the secrets, which Synapse reads from the secrets file after it. */
export function renderHomeserverConfig(s: HomeserverSettings): string {
    const workers = s.workers ?? WORKER_PRESETS.none;
    const shared = sharedWorkerConfig(workers);
    const config: Record<string, unknown> = {
        ...s.extraConfig,
        server_name: s.serverName,
        public_baseurl: `https://${s.homeserverHost}/`,
        listeners: [
            {
                port: SYNAPSE_LISTEN.port,
                // Loopback only: nginx is the one public entrance. 127.0.0.1 rather than ::1,
                // which fails on hosts with IPv6 disabled.
                bind_addresses: [SYNAPSE_LISTEN.address],
                type: "http",
                tls: false,
                x_forwarded: true,
                resources: [{ names: ["client", "federation"], compress: false }],
            },
            // With workers: replication on a UNIX socket in a folder only Synapse's user can enter.
            ...(hasWorkers(workers) ? [REPLICATION_LISTENER] : []),
            ...(s.metricsListener ? [s.metricsListener] : []),
        ],
        ...(s.metricsListener ? { enable_metrics: true } : {}),
        ...mediaRetention(s.mediaRetention),
        log_config: SYNAPSE_PATHS.logConfig,
        media_store_path: SYNAPSE_PATHS.mediaStore,
        // Explicit: the default is the folder of the last config file.
        signing_key_path: SYNAPSE_PATHS.signingKey,
        report_stats: s.reportStats,
        max_upload_size: s.maxUploadSize,
        enable_registration: s.enableRegistration,
        // nginx serves /.well-known; Synapse need not.
        serve_server_wellknown: false,
        // A closed federation asks its members for their keys, not matrix.org.
        trusted_key_servers:
            s.extraConfig.trusted_key_servers ?? (s.federation?.allowedServers ? [] : [{ server_name: "matrix.org" }]),
        suppress_key_server_warning: true,
        ...(s.federation?.customCa ? { federation_custom_ca_list: [SYNAPSE_PATHS.federationCa] } : {}),
        ...(s.federation?.allowedServers ? { federation_domain_whitelist: s.federation.allowedServers } : {}),
        ...(s.federation?.allowedIpRanges ? { ip_range_whitelist: s.federation.allowedIpRanges } : {}),
        ...(s.rtc ? synapseRtcConfig(s.rtc.serviceUrl, s.extraConfig) : {}),
        // The shared secret is in secrets.yaml.
        ...(s.turn
            ? { turn_uris: s.turn.uris, turn_user_lifetime: s.turn.userLifetime, turn_allow_guests: false }
            : {}),
        ...shared,
    };
    const verifies = ["registrations_require_3pid", "registration_requires_token", "recaptcha_public_key"];
    if (s.enableRegistration && !verifies.some((k) => k in s.extraConfig) && !s.auth) {
        // Synapse refuses open registration without a verification step unless told so.
        config.enable_registration_without_verification = true;
    }
    if (s.auth) {
        // MAS signs users in and registers them (matrix:synapse.enableRegistration maps to its own).
        const masSettings = synapseMasSettings(config);
        Object.assign(config, masSettings);
    }
    return yamlFile("Managed by matrix-pulumi; edits are overwritten. Secrets live in secrets.yaml.", config);
}

/** Synapse's media_retention; a lifetime of "forever" is left out (Synapse then keeps that media). */
function mediaRetention(r: HomeserverSettings["mediaRetention"]): Record<string, unknown> {
    if (!r) return {};
    const lifetimes = {
        ...(r.local !== "forever" ? { local_media_lifetime: r.local } : {}),
        ...(r.remote !== "forever" ? { remote_media_lifetime: r.remote } : {}),
    };
    return Object.keys(lifetimes).length > 0 ? { media_retention: lifetimes } : {};
}

/**
 * secrets.yaml (0640 root:matrix-synapse). The whole `database` block lives here: Synapse
 * merges config files shallowly, so a partial block would replace the other one.
 */
export function renderSecretsConfig(s: SynapseSecrets): string {
    return yamlFile("Managed by matrix-pulumi. Secret: readable by root and matrix-synapse only.", {
        registration_shared_secret: s.registrationSharedSecret,
        // Set explicitly: unset, it falls back to the registration secret, and rotating that
        // would log everybody out.
        macaroon_secret_key: s.macaroonSecretKey,
        form_secret: s.formSecret,
        ...(s.turnSharedSecret !== undefined ? { turn_shared_secret: s.turnSharedSecret } : {}),
        ...(s.masSharedSecret !== undefined ? synapseMasConfig(s.masSharedSecret) : {}),
        database: {
            name: "psycopg2",
            args: {
                user: s.database.user,
                password: s.database.password,
                dbname: s.database.name,
                host: s.database.host,
                port: s.database.port,
                // A database on another host: TLS, the server's certificate checked against its CA.
                ...(s.database.tls ? { sslmode: "verify-full", sslrootcert: DATABASE_CA_PATH } : {}),
                cp_min: 5,
                cp_max: 10,
            },
        },
    });
}

/** Logs go to stdout, which systemd hands to the journal. */
export function renderLogConfig(): string {
    return yamlFile("Managed by matrix-pulumi.", {
        version: 1,
        formatters: { journal: { format: "%(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" } },
        filters: { context: { "()": "synapse.logging.context.LoggingContextFilter", request: "" } },
        handlers: {
            journal: {
                class: "logging.StreamHandler",
                formatter: "journal",
                filters: ["context"],
                stream: "ext://sys.stdout",
            },
        },
        loggers: { "synapse.storage.SQL": { level: "INFO" } },
        root: { level: "INFO", handlers: ["journal"] },
        disable_existing_loggers: false,
    });
}

/** The main process's unit; with workers it also owns the replication socket's folder. */
export function renderSynapseUnit(s: { workers?: boolean } = {}): string {
    const p = SYNAPSE_PATHS;
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        "Description=Synapse Matrix homeserver",
        "After=network-online.target postgresql.service",
        "Wants=network-online.target",
        ...(s.workers ? [`PartOf=${SYNAPSE_TARGET}`] : []),
        "",
        "[Service]",
        ...synapseServiceLines(
            `${p.venv}/bin/python -m synapse.app.homeserver --config-path=${p.homeserverConfig} --config-path=${p.secretsConfig}`,
        ),
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=3",
        "SyslogIdentifier=matrix-synapse",
        ...synapseUnitHardening(),
        `ReadWritePaths=${p.dataDir}`,
        ...(s.workers
            ? [
                  `RuntimeDirectory=${WORKER_PATHS.runtimeDir.replace("/run/", "")}`,
                  "RuntimeDirectoryMode=0750",
                  // Kept while Synapse restarts, so workers find the socket's folder again.
                  "RuntimeDirectoryPreserve=yes",
              ]
            : []),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

/** psycopg2 builds from source: it needs a compiler and libpq headers. */
export const SYNAPSE_APT_PACKAGES = [
    "python3",
    "python3-venv",
    "python3-dev",
    "build-essential",
    "libpq-dev",
    "curl",
    "ca-certificates",
];

export interface SynapseInstallSettings {
    version: string;
    /** pip --find-links source; when set, pip does not use an index at all (air-gapped hosts). */
    wheelhouse?: string;
}

const ROOT_SYNAPSE = { owner: "root", group: SYNAPSE_USER } as const;

/**
 * pip arguments for a wheelhouse: a folder on the host or a URL. pip ignores a plain-http
 * source unless its host is trusted; the stack named it, so it is (docs/configuration.md: synapse.wheelhouse).
 */
export function wheelhouseArgs(wheelhouse: string): string {
    const args = ["--no-index", "--find-links", shq(wheelhouse)];
    if (/^http:\/\//.test(wheelhouse)) args.push("--trusted-host", shq(new URL(wheelhouse).hostname));
    return args.join(" ");
}

/**
 * What pip installs: Synapse with the PostgreSQL and Redis extras. Releases before 1.163 accept
 * txredisapi 1.6, whose factory breaks Synapse's Redis connection over a UNIX socket
 * ("'super' object has no attribute 'startedConnecting'"); 1.163 pins it below 1.6, and so does
 * this for the releases before.
 */
export function synapseRequirements(version: string): string {
    const [major = 0, minor = 0] = version.split(".").map(Number);
    const pin = major === 1 && minor < 163 ? [shq("txredisapi<1.6")] : [];
    return [shq(`matrix-synapse[postgres,redis]==${version}`), ...pin].join(" ");
}

/** Where the backup taken before upgrading to `version` lands (the newest such file is reported). */
function preUpgradeBackupGlob(version: string): string {
    return `${SYNAPSE_PATHS.backups}/pre-upgrade-*-to-${version}-*.dump`;
}

/**
 * System user, directories, and a venv with the pinned matrix-synapse (skipped when already that
 * version). Before replacing another installed version it takes a `pg_dump -Fc` of the database
 * (Synapse migrates the schema on its next start, and there is no way back without one).
 */
export function renderSynapseInstallScript(s: SynapseInstallSettings, opts: { user?: string } = {}): string {
    const p = SYNAPSE_PATHS;
    const py = `${p.venv}/bin/python`;
    const pipSource = s.wheelhouse ? wheelhouseArgs(s.wheelhouse) : "";
    return script(
        [
            ...aptInstall(SYNAPSE_APT_PACKAGES),
            `id -u ${SYNAPSE_USER} >/dev/null 2>&1 || useradd --system --home-dir ${shq(p.dataDir)} --shell /usr/sbin/nologin --user-group ${SYNAPSE_USER}`,
            ...ensureDir(p.dataDir, { mode: "0750", owner: SYNAPSE_USER, group: SYNAPSE_USER }),
            ...ensureDir(p.mediaStore, { mode: "0750", owner: SYNAPSE_USER, group: SYNAPSE_USER }),
            ...ensureDir(p.configDir, { mode: "0750", ...ROOT_SYNAPSE }),
            // Worker config files (matrix:synapse.workers) are written here.
            ...ensureDir(WORKER_PATHS.workersDir, { mode: "0750", ...ROOT_SYNAPSE }),
            // Dumps and restores of Synapse's database, wherever it is (before any upgrade's).
            ...writeFile(DATABASE_CLIENT_COMMAND, renderDatabaseClientCommand(), {
                mode: "0755",
                owner: "root",
                group: "root",
            }),
            `[ -x ${shq(py)} ] || python3 -m venv ${shq(p.venv)}`,
            `current=$(${shq(py)} -c 'import synapse; print(synapse.__version__)' 2>/dev/null || true)`,
            `if [ "$current" != ${shq(s.version)} ]; then`,
            // Every process runs one version: the workers stop now, the main process migrates the
            // schema at its restart, and the workers start again after it (docs/scaling.md: Workers).
            `  systemctl stop ${shq(`${WORKER_SERVICE}@*.service`)} 2>/dev/null || true`,
            // The database to save is the one the installed Synapse uses (its secrets file), here
            // or on its own host.
            `  if [ -n "$current" ] && [ -s ${shq(p.secretsConfig)} ]; then`,
            `    install -d -m 0700 -o root -g root ${shq(p.backups)}`,
            `    backup=${shq(p.backups)}/pre-upgrade-"$current"-to-${shq(s.version)}-"$(date -u +%Y%m%dT%H%M%SZ)".dump`,
            // One-time keys are large and useless once restored (Synapse's backup advice).
            `    ${DATABASE_CLIENT_COMMAND} dump > "$backup.part"`,
            `    mv "$backup.part" "$backup"`,
            `    echo "backup before upgrading from $current: $backup"`,
            "  fi",
            "fi",
            // Redis' client comes with every install, so a change of matrix:synapse.workers never
            // reinstalls Synapse (venvs from before it get it once, at their next deploy).
            `if [ "$current" != ${shq(s.version)} ] || ! ${shq(py)} -c 'import txredisapi, hiredis' 2>/dev/null; then`,
            `  ${shq(py)} -m pip install -q --disable-pip-version-check ${pipSource} ${synapseRequirements(s.version)}`,
            `  echo "matrix-synapse ${"$"}{current:-none} -> "${shq(s.version)}`,
            "fi",
        ],
        opts,
    );
}

/** Mode and owner of each file Synapse reads (ManagedFile resources write them). */
export const SYNAPSE_FILE_MODES = {
    homeserverConfig: { mode: "0640", ...ROOT_SYNAPSE },
    federationCa: { mode: "0640", ...ROOT_SYNAPSE },
    databaseCa: { mode: "0640", ...ROOT_SYNAPSE },
    logConfig: { mode: "0640", ...ROOT_SYNAPSE },
    secretsConfig: { mode: "0640", ...ROOT_SYNAPSE },
    unit: { mode: "0644", owner: "root", group: "root" },
} as const;

/**
 * Generate the signing key once (never replaced), load the unit, check the config with Synapse's
 * own loader, (re)start, wait for /health. `revision` is a hash of everything the running
 * process reads (each file's digest and write generation): when it changes, the engine re-runs
 * this. Run again with the revision Synapse already runs with, and healthy, it restarts nothing.
 */
export function renderSynapseServiceScript(
    s: { revision: string; healthTimeoutSeconds: number; version: string },
    opts: { user?: string } = {},
): string {
    const p = SYNAPSE_PATHS;
    const health = `http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}/health`;
    return script(
        [
            `# revision ${s.revision}`,
            `if [ ! -s ${shq(p.signingKey)} ]; then`,
            `  (umask 077 && runuser -u ${SYNAPSE_USER} -- ${shq(`${p.venv}/bin/generate_signing_key`)} -o ${shq(p.signingKey)})`,
            `  echo "generated "${shq(p.signingKey)}`,
            "fi",
            "systemctl daemon-reload",
            `if ! out=$(runuser -u ${SYNAPSE_USER} -- ${shq(`${p.venv}/bin/python`)} -m synapse.config -c ${shq(p.homeserverConfig)} -c ${shq(p.secretsConfig)} 2>&1); then`,
            '  echo "Synapse rejects its configuration:" >&2; echo "$out" | tail -n 20 >&2; exit 1',
            "fi",
            `systemctl enable ${SYNAPSE_SERVICE} >/dev/null 2>&1`,
            `if [ "$(cat ${shq(p.revisionStamp)} 2>/dev/null || true)" = ${shq(s.revision)} ] && systemctl is-active --quiet ${SYNAPSE_SERVICE} \\`,
            `  && curl -fsS --max-time 5 ${shq(health)} >/dev/null 2>&1; then`,
            `  echo "synapse healthy, already running this revision"; exit 0`,
            "fi",
            `rm -f ${shq(p.revisionStamp)}`,
            `systemctl restart ${SYNAPSE_SERVICE} || true`,
            ...untilHealthy(health, s.healthTimeoutSeconds, [
                `echo "Synapse did not answer ${health} within ${s.healthTimeoutSeconds}s. Last journal lines:" >&2`,
                `journalctl -u ${SYNAPSE_SERVICE} -n 40 --no-pager >&2 || true`,
                // shellcheck disable=SC2012 (names are ours, no odd characters)
                `backup=$(ls -t ${preUpgradeBackupGlob(s.version)} 2>/dev/null | head -n 1 || true)`,
                `if [ -n "$backup" ]; then echo "The database as it was before this upgrade: $backup (README: Upgrades)" >&2; fi`,
            ]),
            ...ensureDir(dirOf(p.revisionStamp), { mode: "0755", owner: "root", group: "root" }),
            `printf '%s\\n' ${shq(s.revision)} > ${shq(p.revisionStamp)}`,
            `echo "synapse healthy"`,
        ],
        opts,
    );
}

/** On destroy: stop and disable Synapse (its data is SynapseServer's data step's to keep or purge). */
export function renderSynapseServiceDeleteScript(opts: { user?: string } = {}): string {
    return script(
        [`systemctl disable --now ${SYNAPSE_SERVICE} 2>/dev/null || true`, `rm -f ${shq(SYNAPSE_PATHS.revisionStamp)}`],
        opts,
    );
}

/**
 * Synapse's data as a step of its own: its delete, on destroy (after the service has stopped),
 * keeps the media store, signing key, config and venv, or with `purge` (matrix:purgeOnDestroy)
 * removes them. The database goes with PostgresDatabase's data step.
 */
export function renderSynapseDataScript(
    s: { purge: boolean },
    opts: { user?: string } = {},
): {
    create: string;
    delete: string;
} {
    const p = SYNAPSE_PATHS;
    const kept = [p.dataDir, p.configDir, p.venv];
    return {
        create: script([`echo "Synapse's data: ${kept.join(", ")}"`], opts),
        delete: script(
            s.purge
                ? [
                      `rm -rf ${[...kept, p.unit, p.revisionStamp].map(shq).join(" ")}`,
                      "systemctl daemon-reload",
                      `echo "purged Synapse's data, config and venv"`,
                  ]
                : [`echo "kept ${p.dataDir} (media, signing key) and ${p.configDir}"`],
            opts,
        ),
    };
}

/**
 * Create one account once, with the shared secret from secrets.yaml and the password from stdin
 * (neither in argv). An existing account is left as it is (`--exists-ok`), password included.
 */
export function renderUserScript(u: { name: string; admin: boolean }, opts: { user?: string } = {}): string {
    const p = SYNAPSE_PATHS;
    return script(
        [
            `${shq(`${p.venv}/bin/register_new_matrix_user`)} -c ${shq(p.secretsConfig)} --exists-ok -u ${shq(u.name)} \\`,
            `  --password-file /dev/stdin ${u.admin ? "--admin" : "--no-admin"} http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}`,
        ],
        opts,
    );
}
