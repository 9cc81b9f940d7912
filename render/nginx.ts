// nginx: the port-80 ACME/redirect server, shared TLS settings, the apex and homeserver vhosts,
// and the certbot steps. Blocks are built from small functions that return lines.
import { aptInstall, ensureDir, script, sha256, shq, writeFile } from "./shell";
import { MAS_COMPAT_LOCATION, MAS_LOOPBACK, MAS_PUBLIC_PATH } from "./mas";
import { RTC_LOOPBACK, RTC_PUBLIC_PATHS } from "./rtc";
import { wellKnownClient, wellKnownServer, wellKnownSupport, type SupportSettings } from "./wellknown";

/** The variable the homeserver vhost proxies to; the upstreams file (render/workers.ts) sets it. */
export const NGINX_UPSTREAM_VARIABLE = "$matrix_synapse_upstream";

export const NGINX_PATHS = {
    acmeWebroot: "/var/www/acme",
    tlsSnippet: "/etc/nginx/snippets/matrix-tls.conf",
    sitesAvailable: "/etc/nginx/sites-available",
    sitesEnabled: "/etc/nginx/sites-enabled",
    acmeSite: "matrix-acme.conf",
    apexSite: "matrix-apex.conf",
    homeserverSite: "matrix-homeserver.conf",
    deployHook: "/etc/letsencrypt/renewal-hooks/deploy/matrix-pulumi-reload-nginx",
    acmeCaBundle: "/etc/matrix-pulumi/acme-ca.pem",
    certbotDropIn: "/etc/systemd/system/certbot.service.d/matrix-pulumi-ca.conf",
} as const;

export const NGINX_APT_PACKAGES = ["nginx", "certbot"];

export function certificatePaths(host: string): { fullchain: string; privkey: string } {
    return {
        fullchain: `/etc/letsencrypt/live/${host}/fullchain.pem`,
        privkey: `/etc/letsencrypt/live/${host}/privkey.pem`,
    };
}

const HSTS = 'add_header Strict-Transport-Security "max-age=31536000" always;';

/** An nginx single-quoted string. nginx has no escape for `$`, so it may not occur. */
export function nginxString(value: string): string {
    if (value.includes("$")) throw new Error(`nginx strings cannot hold '$': ${value}`);
    return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export function block(head: string, body: string[]): string[] {
    return [`${head} {`, ...body.map((l) => (l === "" ? "" : `    ${l}`)), "}"];
}

function listen(port: number, opts: { ssl: boolean; ipv6: boolean }): string[] {
    const suffix = opts.ssl ? " ssl http2" : "";
    return [`listen ${port}${suffix};`, ...(opts.ipv6 ? [`listen [::]:${port}${suffix};`] : [])];
}

/** The start of every TLS server: listeners, name, certificate, shared TLS settings, HSTS. */
export function tlsServerHead(host: string, opts: { ipv6: boolean; ports?: number[] }): string[] {
    const cert = certificatePaths(host);
    return [
        ...(opts.ports ?? [443]).flatMap((p) => listen(p, { ssl: true, ipv6: opts.ipv6 })),
        `server_name ${host};`,
        `ssl_certificate ${cert.fullchain};`,
        `ssl_certificate_key ${cert.privkey};`,
        `include ${NGINX_PATHS.tlsSnippet};`,
        HSTS,
    ];
}

/** Recommended TLS (Mozilla "intermediate") and gzip; included in every TLS server. */
export function renderTlsSnippet(): string {
    return [
        "# Managed by matrix-pulumi.",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384;",
        // Mozilla says "off" for this all-strong list, but then clients pick the order, and
        // testssl rates a server without a cipher order HIGH: the server's order it is.
        "ssl_prefer_server_ciphers on;",
        "ssl_session_timeout 1d;",
        "ssl_session_cache shared:MatrixTLS:10m;",
        "ssl_session_tickets off;",
        // Server level: Debian's nginx.conf already says `gzip on;` at http level.
        "gzip on;",
        "gzip_vary on;",
        "gzip_proxied any;",
        "gzip_comp_level 5;",
        "gzip_min_length 256;",
        "gzip_types application/json application/javascript text/css text/plain image/svg+xml application/wasm;",
        "",
    ].join("\n");
}

/** Port 80 for every name: the ACME HTTP-01 webroot, and a redirect to https for the rest. */
export function renderAcmeSite(s: { hosts: string[]; ipv6: boolean }): string {
    return [
        "# Managed by matrix-pulumi.",
        ...block("server", [
            ...listen(80, { ssl: false, ipv6: s.ipv6 }),
            `server_name ${s.hosts.join(" ")};`,
            ...block("location ^~ /.well-known/acme-challenge/", [
                `root ${NGINX_PATHS.acmeWebroot};`,
                "default_type text/plain;",
            ]),
            ...block("location /", ["return 301 https://$host$request_uri;"]),
        ]),
        "",
    ].join("\n");
}

/** A location answering with a fixed JSON document, CORS-open (Matrix clients run in browsers). */
function jsonLocation(path: string, body: unknown): string[] {
    return block(`location = ${path}`, [
        // default_type, not add_header Content-Type, which would send a second header.
        "default_type application/json;",
        'add_header Access-Control-Allow-Origin "*" always;',
        HSTS,
        `return 200 ${nginxString(JSON.stringify(body))};`,
    ]);
}

/** The support document, where the server name's vhost serves it (when matrix:support is set). */
function supportLocation(support: SupportSettings | undefined): string[] {
    return support ? jsonLocation("/.well-known/matrix/support", wellKnownSupport(support)) : [];
}

/** The homeserver vhost's locations: lk-jwt-service, and LiveKit's API and WebSocket signalling. */
/**
 * MAS (its reverse-proxy doc): its pages and APIs under /auth/ (its listener's prefix, so the path
 * passes as sent), and the Matrix compatibility routes (login, logout, refresh), sent under the
 * same prefix.
 */
function masLocations(): string[] {
    const forwarded = [
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_http_version 1.1;",
    ];
    return [
        ...block(`location ^~ ${MAS_PUBLIC_PATH}/`, [`proxy_pass http://127.0.0.1:${MAS_LOOPBACK.web};`, ...forwarded]),
        ...block(`location ${MAS_COMPAT_LOCATION}`, [
            `proxy_pass http://127.0.0.1:${MAS_LOOPBACK.web}${MAS_PUBLIC_PATH}$request_uri;`,
            ...forwarded,
        ]),
    ];
}

function rtcLocations(): string[] {
    const forwarded = [
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ];
    return [
        // The trailing slashes strip the prefix: /livekit/jwt/get_token reaches /get_token.
        ...block(`location ^~ ${RTC_PUBLIC_PATHS.jwt}/`, [
            `proxy_pass http://127.0.0.1:${RTC_LOOPBACK.jwt}/;`,
            ...forwarded,
        ]),
        ...block(`location ^~ ${RTC_PUBLIC_PATHS.sfu}/`, [
            `proxy_pass http://127.0.0.1:${RTC_LOOPBACK.livekit}/;`,
            ...forwarded,
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            'proxy_set_header Connection "upgrade";',
            // Signalling stays open for the whole call.
            "proxy_read_timeout 3600s;",
            "proxy_send_timeout 3600s;",
            "proxy_buffering off;",
        ]),
    ];
}

/** The apex (server_name) vhost: only the well-known documents. */
export function renderApexSite(s: {
    domain: string;
    homeserverHost: string;
    ipv6: boolean;
    support?: SupportSettings;
    /** MatrixRTC's focus in the client document (matrix:rtc). */
    rtc?: { serviceUrl: string };
}): string {
    return [
        "# Managed by matrix-pulumi.",
        ...block("server", [
            ...tlsServerHead(s.domain, { ipv6: s.ipv6 }),
            "",
            ...jsonLocation("/.well-known/matrix/server", wellKnownServer(s.homeserverHost)),
            ...jsonLocation("/.well-known/matrix/client", wellKnownClient(s.homeserverHost, s.rtc)),
            ...supportLocation(s.support),
            ...block("location /", ["return 404;"]),
        ]),
        "",
    ].join("\n");
}

export interface HomeserverSiteSettings {
    homeserverHost: string;
    maxUploadSize: string;
    ipv6: boolean;
    /** Federation on 8448 too (delegation "none"); also serves the client well-known then. */
    federationPort: boolean;
    /** With federationPort (the server name's own vhost): the support document. */
    support?: SupportSettings;
    /** MatrixRTC (matrix:rtc): lk-jwt-service and LiveKit behind /livekit/, the focus in the client document. */
    rtc?: { serviceUrl: string };
    /** Matrix Authentication Service (matrix:auth): behind /auth/, and the compatibility routes. */
    auth?: boolean;
}

/**
 * The homeserver vhost: /_matrix and /_synapse/client to Synapse, 404 for everything else. Which
 * Synapse process gets a path is the upstreams file's to say (render/workers.ts), so changing the
 * workers leaves this file as it is.
 */
export function renderHomeserverSite(s: HomeserverSiteSettings): string {
    return [
        "# Managed by matrix-pulumi.",
        ...block("server", [
            ...tlsServerHead(s.homeserverHost, { ipv6: s.ipv6, ports: s.federationPort ? [443, 8448] : [443] }),
            // Nothing here is meant to be framed or sniffed (testssl rates their absence MEDIUM).
            'add_header X-Content-Type-Options "nosniff" always;',
            'add_header X-Frame-Options "SAMEORIGIN" always;',
            // Equal to Synapse's max_upload_size, so nginx never cuts an upload Synapse accepts.
            `client_max_body_size ${s.maxUploadSize};`,
            "",
            // Before Synapse's: nginx takes the first regex location that matches, so MAS answers the
            // compatibility routes whichever Synapse process the upstreams file names.
            ...(s.auth ? masLocations() : []),
            // No URI after the port: nginx would re-encode the path and break federation signatures.
            ...block("location ~ ^(/_matrix|/_synapse/client)", [
                // A variable naming an upstream group: no resolver, and the request URI passes as sent.
                `proxy_pass http://${NGINX_UPSTREAM_VARIABLE};`,
                "proxy_set_header X-Forwarded-For $remote_addr;",
                "proxy_set_header X-Forwarded-Proto $scheme;",
                "proxy_set_header Host $host:$server_port;",
                "proxy_http_version 1.1;",
                // Without this nginx sends "Connection: close" and the keepalive pool stays empty.
                'proxy_set_header Connection "";',
                "proxy_read_timeout 600s;",
            ]),
            ...(s.rtc ? rtcLocations() : []),
            ...(s.federationPort
                ? [
                      ...jsonLocation("/.well-known/matrix/client", wellKnownClient(s.homeserverHost, s.rtc)),
                      ...supportLocation(s.support),
                  ]
                : []),
            ...block("location /", ["return 404;"]),
        ]),
        "",
    ].join("\n");
}

export interface NginxInstallSettings {
    /** Every name that gets a certificate (served on port 80 for ACME). */
    hosts: string[];
    ipv6: boolean;
    /** PEM bundle for a private ACME server's TLS; also given to the renewal service. */
    acmeCaBundle?: string;
}

/** Install nginx and certbot, serve the ACME webroot on port 80, put the reload hook in place. */
export function renderNginxInstallScript(s: NginxInstallSettings, opts: { user?: string } = {}): string {
    const P = NGINX_PATHS;
    const root = { owner: "root", group: "root" };
    return script(
        [
            ...aptInstall(NGINX_APT_PACKAGES),
            ...ensureDir(`${P.acmeWebroot}/.well-known/acme-challenge`, { mode: "0755", ...root }),
            ...ensureDir("/etc/nginx/snippets", { mode: "0755", ...root }),
            ...ensureDir("/etc/letsencrypt/renewal-hooks/deploy", { mode: "0755", ...root }),
            ...writeFile(P.tlsSnippet, renderTlsSnippet(), { mode: "0644", ...root }),
            ...writeFile(`${P.sitesAvailable}/${P.acmeSite}`, renderAcmeSite(s), { mode: "0644", ...root }),
            `ln -sfn ${shq(`${P.sitesAvailable}/${P.acmeSite}`)} ${shq(`${P.sitesEnabled}/${P.acmeSite}`)}`,
            // Debian's welcome page would answer for any name on port 80.
            `rm -f ${shq(`${P.sitesEnabled}/default`)}`,
            ...writeFile(P.deployHook, "#!/bin/sh\n# Managed by matrix-pulumi.\nsystemctl reload nginx\n", {
                mode: "0755",
                ...root,
            }),
            ...(s.acmeCaBundle
                ? [
                      ...ensureDir("/etc/matrix-pulumi", { mode: "0755", ...root }),
                      ...ensureDir("/etc/systemd/system/certbot.service.d", { mode: "0755", ...root }),
                      ...writeFile(P.acmeCaBundle, s.acmeCaBundle, { mode: "0644", ...root }),
                      ...writeFile(
                          P.certbotDropIn,
                          `# Managed by matrix-pulumi.\n[Service]\nEnvironment=REQUESTS_CA_BUNDLE=${P.acmeCaBundle}\n`,
                          { mode: "0644", ...root },
                      ),
                  ]
                : [`rm -f ${shq(P.certbotDropIn)} ${shq(P.acmeCaBundle)}`]),
            "systemctl daemon-reload",
            "systemctl enable --now certbot.timer >/dev/null 2>&1 || true",
            "nginx -t -q",
            "systemctl enable nginx >/dev/null 2>&1",
            "if systemctl is-active --quiet nginx; then systemctl reload nginx; else systemctl start nginx; fi",
        ],
        opts,
    );
}

export interface AcmeSettings {
    email: string;
    directoryUrl: string;
    caBundle: boolean;
}

/** certbot keeps accounts under accounts/<host[:port]>/<path>/ of the directory URL. */
export function certbotAccountDir(directoryUrl: string): string {
    const u = new URL(directoryUrl);
    return `/etc/letsencrypt/accounts/${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

/** certbot allows one instance at a time; the certificate steps run in parallel and queue here. */
export const CERTBOT_LOCK = "/run/matrix-pulumi-certbot.lock";

function acmeEnv(s: { caBundle: boolean }): string[] {
    return [
        ...(s.caBundle ? [`export REQUESTS_CA_BUNDLE=${shq(NGINX_PATHS.acmeCaBundle)}`] : []),
        `exec 8>${CERTBOT_LOCK}`,
        "flock -w 900 8",
    ];
}

/** The ACME account for this directory: registered once, its e-mail kept current. */
export function renderAcmeAccountScript(s: AcmeSettings, opts: { user?: string } = {}): string {
    const server = `--server ${shq(s.directoryUrl)}`;
    return script(
        [
            ...acmeEnv(s),
            `if ls ${shq(certbotAccountDir(s.directoryUrl))}/*/regr.json >/dev/null 2>&1; then`,
            `  certbot update_account -n ${server} -m ${shq(s.email)} --no-eff-email`,
            "else",
            `  certbot register -n ${server} -m ${shq(s.email)} --agree-tos --no-eff-email`,
            "fi",
        ],
        opts,
    );
}

/**
 * One certificate per name (HTTP-01 through the webroot), under the account the account step
 * registered. Kept until it nears expiry; issued
 * anew when the stack moves to another ACME directory (staging to production, say).
 */
export function renderCertificateScript(
    s: Omit<AcmeSettings, "email"> & { host: string },
    opts: { user?: string } = {},
): string {
    const renewal = `/etc/letsencrypt/renewal/${s.host}.conf`;
    const cert = certificatePaths(s.host).fullchain;
    return script(
        [
            ...acmeEnv(s),
            "force=",
            `if [ -f ${shq(renewal)} ] && ! grep -qxF ${shq(`server = ${s.directoryUrl}`)} ${shq(renewal)}; then force=--force-renewal; fi`,
            `before=$({ sha256sum < ${shq(cert)}; } 2>/dev/null || true)`,
            `certbot certonly -n --webroot -w ${shq(NGINX_PATHS.acmeWebroot)} --cert-name ${shq(s.host)} -d ${shq(s.host)} \\`,
            `  --server ${shq(s.directoryUrl)} --keep-until-expiring $force`,
            `test -s ${shq(cert)}`,
            // A new certificate (first issue, a replacement, another CA) is served at once where a
            // live site already names it; the first deploy's sites are enabled later.
            `if [ "$(sha256sum < ${shq(cert)})" != "$before" ] && grep -qsF ${shq(cert)} ${shq(NGINX_PATHS.sitesEnabled)}/* \\`,
            "  && systemctl is-active --quiet nginx && nginx -t -q; then systemctl reload nginx; echo 'nginx reloaded'; fi",
        ],
        opts,
    );
}

/** Mode and owner of the vhost files (ManagedFile resources write them into sites-available). */
export const SITE_FILE_MODE = { mode: "0644", owner: "root", group: "root" } as const;

/**
 * Enable the TLS sites whose files are in sites-available, remove the ones this stack no longer
 * serves (`absent`), test the whole config, reload nginx. `revision` covers the site files'
 * digests and write generations: a changed or restored file re-runs this (a reload, no restart).
 */
export function renderSitesScript(
    s: { enabled: string[]; absent: string[]; revision: string },
    opts: { user?: string } = {},
): string {
    const P = NGINX_PATHS;
    return script(
        [
            `# revision ${sha256(s.revision)}`,
            ...[...s.enabled]
                .sort()
                .map((name) => `ln -sfn ${shq(`${P.sitesAvailable}/${name}`)} ${shq(`${P.sitesEnabled}/${name}`)}`),
            ...s.absent.map(
                (name) => `rm -f ${shq(`${P.sitesEnabled}/${name}`)} ${shq(`${P.sitesAvailable}/${name}`)}`,
            ),
            "nginx -t -q",
            "systemctl reload nginx",
        ],
        opts,
    );
}

/**
 * On destroy: disable the given sites (their files are ManagedFiles, removed with them), remove
 * `files` this step wrote itself, and reload; nginx itself stays (it may serve others).
 */
export function renderSitesDeleteScript(
    s: { disable: string[]; files?: string[] },
    opts: { user?: string } = {},
): string {
    const P = NGINX_PATHS;
    return script(
        [
            `rm -f ${s.disable.map((n) => shq(`${P.sitesEnabled}/${n}`)).join(" ")}`,
            ...(s.files?.length ? [`rm -f ${s.files.map(shq).join(" ")}`] : []),
            "if systemctl is-active --quiet nginx; then nginx -t -q && systemctl reload nginx; fi",
        ],
        opts,
    );
}

/** On destroy: the certificate goes with its name (renewing it would fail once DNS is gone). */
export function renderCertificateDeleteScript(host: string, opts: { user?: string } = {}): string {
    return script(
        [
            `exec 8>${CERTBOT_LOCK}`,
            "flock -w 900 8",
            `if [ -e ${shq(`/etc/letsencrypt/renewal/${host}.conf`)} ]; then certbot delete -n --cert-name ${shq(host)}; fi`,
        ],
        opts,
    );
}
