// MatrixRTC (Element Call): the LiveKit SFU and lk-jwt-service, each a pinned release binary run by
// a hardened unit of its own; their configs; the nginx locations on the homeserver host; the
// homeserver.yaml keys that announce them.
import { stringify } from "yaml";
import { aptInstall, downloadChecked, ensureDir, restartOnRevision, script, sha256, shq } from "./shell";
import { synapseUnitHardening, untilHealthy } from "./synapseBase";

export const RTC_PATHS = {
    etc: "/etc/matrix-rtc",
    livekitConfig: "/etc/matrix-rtc/livekit.yaml",
    jwtKeys: "/etc/matrix-rtc/lk-jwt-service.keys",
    /** The CAs lk-jwt-service trusts (matrix:federation.caBundle), in place of the system's. */
    jwtCa: "/etc/matrix-rtc/federation-ca.pem",
    releases: "/opt/matrix-rtc",
    state: "/var/lib/matrix-rtc",
    cache: "/var/cache/matrix-pulumi",
    livekitUnit: "/etc/systemd/system/matrix-livekit.service",
    jwtUnit: "/etc/systemd/system/matrix-lk-jwt-service.service",
} as const;

export const RTC_SERVICES = { livekit: "matrix-livekit", jwt: "matrix-lk-jwt-service" } as const;
export const RTC_USERS = { livekit: "matrix-livekit", jwt: "matrix-lk-jwt" } as const;
/** Loopback ports nginx proxies to: LiveKit's HTTP/WebSocket API and lk-jwt-service. */
export const RTC_LOOPBACK = { livekit: 7880, jwt: 8070 } as const;
/** Where the homeserver vhost serves them (docs/calls.md: why a path and not a host name). */
export const RTC_PUBLIC_PATHS = { jwt: "/livekit/jwt", sfu: "/livekit/sfu" } as const;
/** The API key name both services share; its secret is generated. */
export const LIVEKIT_API_KEY = "matrixrtc";
export const RTC_APT_PACKAGES = ["curl", "ca-certificates"];

const ROOT = { owner: "root", group: "root" } as const;
export const RTC_FILE_MODES = {
    unit: { mode: "0644", ...ROOT },
    livekitConfig: { mode: "0640", owner: "root", group: RTC_USERS.livekit },
    jwtKeys: { mode: "0640", owner: "root", group: RTC_USERS.jwt },
    jwtCa: { mode: "0644", ...ROOT },
} as const;

/** The public URLs: what Element Call is told (well-known, transports) and what LiveKit clients dial. */
export function rtcUrls(homeserverHost: string): { serviceUrl: string; sfuUrl: string } {
    return {
        serviceUrl: `https://${homeserverHost}${RTC_PUBLIC_PATHS.jwt}`,
        sfuUrl: `wss://${homeserverHost}${RTC_PUBLIC_PATHS.sfu}`,
    };
}

/** `org.matrix.msc4143.rtc_foci` of /.well-known/matrix/client, and Synapse's transports. */
export function rtcTransport(serviceUrl: string): { type: "livekit"; livekit_service_url: string } {
    return { type: "livekit", livekit_service_url: serviceUrl };
}

/** A pinned release file: which binary it is, where it comes from, its checksum. */
export interface RtcRelease {
    /** The binary's name (in the tarball, or the file itself). */
    binary: "livekit-server" | "lk-jwt-service";
    version: string;
    url: string;
    sha256: string;
}

/** The installed binary: named by version and checksum, so a new file never replaces a running one. */
export function rtcBinaryPath(r: Omit<RtcRelease, "url">): string {
    return `${RTC_PATHS.releases}/${r.binary}-v${r.version}-${r.sha256.slice(0, 12)}`;
}

export interface LivekitSettings {
    /** The address ICE candidates carry: the machine's public IPv4 (no STUN guessing). */
    nodeIp: string;
    udpPort: number;
    tcpPort: number;
    apiSecret: string;
    /** LiveKit's embedded TURN on this UDP port; its domain is the homeserver host. */
    turn?: { udpPort: number; domain: string };
}

/** livekit.yaml (secret: it holds the API key's secret). */
export function renderLivekitConfig(s: LivekitSettings): string {
    const config = {
        port: RTC_LOOPBACK.livekit,
        // The HTTP/WebSocket API on loopback only; nginx is its public entrance (TLS).
        bind_addresses: ["127.0.0.1"],
        rtc: {
            udp_port: s.udpPort,
            tcp_port: s.tcpPort,
            use_external_ip: false,
            node_ip: s.nodeIp,
        },
        // Only lk-jwt-service (for full-access users) creates rooms.
        room: { auto_create: false },
        keys: { [LIVEKIT_API_KEY]: s.apiSecret },
        ...(s.turn ? { turn: { enabled: true, domain: s.turn.domain, udp_port: s.turn.udpPort, tls_port: 0 } } : {}),
        logging: { level: "info", json: false },
    };
    return "# Managed by matrix-pulumi. Secret: readable by root and matrix-livekit only.\n" + stringify(config);
}

/** lk-jwt-service's LIVEKIT_KEY_FILE: "key: secret". */
export function renderJwtKeys(apiSecret: string): string {
    return `${LIVEKIT_API_KEY}: ${apiSecret}\n`;
}

/** A systemd Environment= assignment, quoted (values may hold commas). */
function env(name: string, value: string): string {
    if (/["\\\n$%]/.test(value)) throw new Error(`not a plain environment value: ${value}`);
    return `Environment="${name}=${value}"`;
}

function unit(s: { description: string; user: string; execStart: string; environment: string[] }): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        `Description=${s.description}`,
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        `User=${s.user}`,
        `Group=${s.user}`,
        ...s.environment,
        `ExecStart=${s.execStart}`,
        // livekit-server exits 0 even when it cannot start (a bad config, a port in use).
        "Restart=always",
        "RestartSec=3",
        "LimitNOFILE=65536",
        ...synapseUnitHardening(),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

export function renderLivekitUnit(s: { binary: string }): string {
    return unit({
        description: "LiveKit SFU (MatrixRTC media)",
        user: RTC_USERS.livekit,
        execStart: `${s.binary} --config ${RTC_PATHS.livekitConfig}`,
        environment: [],
    });
}

export interface JwtServiceSettings {
    binary: string;
    /** The SFU's public WebSocket URL: handed to clients, and where rooms are created. */
    sfuUrl: string;
    /** Homeservers whose users may create rooms (this one first). */
    fullAccessHomeservers: string[];
    /** Trust only matrix:federation.caBundle (a closed federation), as Synapse does. */
    customCa: boolean;
}

export function renderJwtServiceUnit(s: JwtServiceSettings): string {
    return unit({
        description: "lk-jwt-service (MatrixRTC authorisation)",
        user: RTC_USERS.jwt,
        execStart: s.binary,
        environment: [
            env("LIVEKIT_URL", s.sfuUrl),
            env("LIVEKIT_KEY_FILE", RTC_PATHS.jwtKeys),
            env("LIVEKIT_FULL_ACCESS_HOMESERVERS", [...new Set(s.fullAccessHomeservers)].join(",")),
            env("LIVEKIT_JWT_BIND", `127.0.0.1:${RTC_LOOPBACK.jwt}`),
            ...(s.customCa ? [env("SSL_CERT_FILE", RTC_PATHS.jwtCa)] : []),
        ],
    });
}

/** The users, folders and state the services need; on delete (matrix:rtc off) all of it goes. */
export function renderRtcDirsScript(opts: { user?: string } = {}): { create: string; delete: string } {
    return {
        create: script(
            [
                ...Object.values(RTC_USERS).map(
                    (u) =>
                        `id -u ${u} >/dev/null 2>&1 || useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${u}`,
                ),
                ...ensureDir(RTC_PATHS.etc, { mode: "0755", ...ROOT }),
                ...ensureDir(RTC_PATHS.releases, { mode: "0755", ...ROOT }),
                ...ensureDir(RTC_PATHS.state, { mode: "0755", ...ROOT }),
            ],
            opts,
        ),
        delete: script(
            [
                `rm -rf ${shq(RTC_PATHS.etc)} ${shq(RTC_PATHS.releases)} ${shq(RTC_PATHS.state)}`,
                // The units' files went with their resources: systemd forgets them.
                "systemctl daemon-reload",
                ...Object.values(RTC_USERS).map((u) => `if id -u ${u} >/dev/null 2>&1; then userdel ${u}; fi`),
                `echo "MatrixRTC removed"`,
            ],
            opts,
        ),
    };
}

/**
 * Download the release file, check its SHA-256 before anything else, and install the binary
 * (from the tarball, or the file itself) under a name of its version and checksum.
 */
export function renderRtcReleaseScript(r: RtcRelease, opts: { user?: string } = {}): string {
    const dest = rtcBinaryPath(r);
    const part = `${RTC_PATHS.cache}/${r.binary}-v${r.version}.part`;
    return script(
        [
            `if [ -x ${shq(dest)} ]; then echo "${r.binary} v${r.version} already in place"; exit 0; fi`,
            ...aptInstall(RTC_APT_PACKAGES),
            ...ensureDir(RTC_PATHS.cache, { mode: "0755", ...ROOT }),
            ...downloadChecked({
                url: r.url,
                sha256: r.sha256,
                part,
                what: r.binary,
                key: "the stack",
                done: "installed",
            }),
            `tmp=$(mktemp -d ${shq(RTC_PATHS.releases + "/.install.XXXXXX")})`,
            `if gzip -t ${shq(part)} 2>/dev/null; then`,
            `  tar -xzf ${shq(part)} -C "$tmp" --no-same-owner`,
            `  found=$(find "$tmp" -type f -name ${shq(r.binary)} | head -n 1)`,
            `  if [ -z "$found" ]; then rm -rf "$tmp" ${shq(part)}; echo "the tarball from "${shq(r.url)}" has no ${r.binary}" >&2; exit 1; fi`,
            `  install -m 0755 "$found" "$tmp/bin"`,
            "else",
            `  install -m 0755 ${shq(part)} "$tmp/bin"`,
            "fi",
            `mv -f "$tmp/bin" ${shq(dest)}`,
            `rm -rf "$tmp" ${shq(part)}`,
            `echo "${r.binary} v${r.version} installed"`,
        ],
        opts,
    );
}

/**
 * Enable and (re)start each service whose files changed, wait until both answer on loopback, and
 * remove the release binaries no unit runs any more.
 */
export function renderRtcServiceScript(
    s: { livekitRevision: string; jwtRevision: string; binaries: string[]; livekitBinary: string },
    opts: { user?: string } = {},
): string {
    const stamp = (name: string) => `${RTC_PATHS.state}/${name}.revision`;
    const logs = (unitName: string) => [
        `echo "${unitName} did not answer on loopback within 60 s; its last log lines:" >&2`,
        `journalctl -u ${unitName} -n 30 --no-pager >&2 || true`,
    ];
    return script(
        [
            // The config checked before any restart (it exits 0 either way: its output tells).
            `if ! check=$(${shq(s.livekitBinary)} --config ${shq(RTC_PATHS.livekitConfig)} ports 2>&1) || ! grep -q 'ICE/TCP' <<<"$check"; then`,
            `  echo "livekit-server refuses ${RTC_PATHS.livekitConfig}: $check" >&2`,
            "  exit 1",
            "fi",
            "systemctl daemon-reload",
            `systemctl enable ${RTC_SERVICES.livekit} ${RTC_SERVICES.jwt} >/dev/null 2>&1`,
            ...restartOnRevision(RTC_SERVICES.livekit, stamp("livekit"), sha256(s.livekitRevision), "livekit-server"),
            ...restartOnRevision(RTC_SERVICES.jwt, stamp("lk-jwt-service"), sha256(s.jwtRevision), "lk-jwt-service"),
            ...untilHealthy(`http://127.0.0.1:${RTC_LOOPBACK.livekit}/`, 60, logs(RTC_SERVICES.livekit)),
            ...untilHealthy(`http://127.0.0.1:${RTC_LOOPBACK.jwt}/healthz`, 60, logs(RTC_SERVICES.jwt)),
            `for old in ${shq(RTC_PATHS.releases)}/*; do`,
            `  case "$old" in ${s.binaries.map(shq).join("|")}) ;; *) rm -f "$old"; echo "removed \${old##*/}" ;; esac`,
            "done",
        ],
        opts,
    );
}

/** On delete (matrix:rtc off, or destroy): both services stopped and disabled; their units go with their files. */
export function renderRtcStopScript(opts: { user?: string } = {}): string {
    return script(
        [
            `systemctl disable --now ${RTC_SERVICES.livekit} ${RTC_SERVICES.jwt} 2>/dev/null || true`,
            `rm -f ${shq(RTC_PATHS.state)}/*.revision`,
        ],
        opts,
    );
}

/** homeserver.yaml keys for MatrixRTC (Element Call's self-hosting guide). */
export function synapseRtcConfig(serviceUrl: string, extraConfig: Record<string, unknown>): Record<string, unknown> {
    const experimental = (extraConfig.experimental_features ?? {}) as Record<string, unknown>;
    return {
        experimental_features: {
            ...experimental,
            // The transports endpoint, sync's state_after. (Room summaries, MSC3266, are stable
            // in this Synapse: its flag is gone.)
            msc4143_enabled: true,
            msc4222_enabled: true,
        },
        // Delayed events (MSC4140): a call membership that ends itself when a client vanishes.
        max_event_delay_duration: extraConfig.max_event_delay_duration ?? "24h",
        // Calls send many small events (keys, memberships); the guide's limits, unless the stack sets its own.
        rc_message: extraConfig.rc_message ?? { per_second: 0.5, burst_count: 30 },
        rc_delayed_event_mgmt: extraConfig.rc_delayed_event_mgmt ?? { per_second: 1, burst_count: 20 },
        matrix_rtc: { transports: [rtcTransport(serviceUrl)] },
    };
}
