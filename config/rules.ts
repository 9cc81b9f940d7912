// Checks across keys. They run on the raw values, so they report even when other keys are bad,
// and read the defaults (config/defaults.ts) for keys not set.
import { SYNAPSE_LISTEN } from "../render/synapseBase";
import { METRICS_PORTS } from "../render/monitoring";
import { MAS_LOOPBACK } from "../render/mas";
import { RTC_LOOPBACK } from "../render/rtc";
import { DEFAULTS } from "./defaults";

/** Synapse keys the program sets itself; `synapse.extraConfig` may not override them. */
export const MANAGED_SYNAPSE_KEYS: Record<string, string> = {
    server_name: "set matrix:domain",
    public_baseurl: "set matrix:homeserverHost",
    listeners: "nginx proxies to the loopback listener the program manages",
    database: "set matrix:postgres",
    registration_shared_secret: "the program generates it (a secret stack output)",
    registration_shared_secret_path: "the program generates the secret",
    macaroon_secret_key: "the program generates it",
    form_secret: "the program generates it",
    signing_key_path: "the program keeps the key at /var/lib/matrix-synapse/signing.key",
    media_store_path: "the program keeps media under /var/lib/matrix-synapse/media_store",
    log_config: "the program manages the log configuration",
    max_upload_size: "set matrix:synapse.maxUploadSize",
    federation_custom_ca_list: "set matrix:federation.caBundle",
    federation_domain_whitelist: "set matrix:federation.allowedServers",
    ip_range_whitelist: "set matrix:federation.allowedIpRanges",
    enable_registration: "set matrix:synapse.enableRegistration",
    report_stats: "set matrix:synapse.reportStats",
    media_retention: "set matrix:synapse.mediaRetention",
    enable_metrics: "set matrix:monitoring.enabled",
    matrix_rtc: "set matrix:rtc",
    matrix_authentication_service: "set matrix:auth",
    turn_uris: "set matrix:turn",
    turn_shared_secret: "set matrix:turn (the program generates the secret)",
    turn_shared_secret_path: "set matrix:turn (the program generates the secret)",
};

export function defaultHomeserverHost(domain: string, delegation: unknown): string {
    return delegation === "none" ? domain : `matrix.${domain}`;
}

/** Every problem across keys, in the order a reader meets the keys. */
export function crossKeyProblems(v: Record<string, unknown>): string[] {
    const problems: string[] = [];
    const domain = typeof v.domain === "string" ? v.domain : undefined;
    if (domain === undefined) return problems;
    const homeserverHost =
        typeof v.homeserverHost === "string" ? v.homeserverHost : defaultHomeserverHost(domain, v.delegation);
    const elementHost = typeof v.elementHost === "string" ? v.elementHost : `element.${domain}`;
    if (elementHost === homeserverHost) {
        problems.push(
            `matrix:elementHost: must differ from matrix:homeserverHost (${homeserverHost}); serve Element on its own host name, such as element.${domain}`,
        );
    } else if (elementHost === domain) {
        problems.push(
            `matrix:elementHost: must differ from matrix:domain (${domain}); serve Element on its own host name, such as element.${domain}`,
        );
    }
    if (v.delegation === "none" && homeserverHost !== domain) {
        problems.push(
            `matrix:homeserverHost: must equal matrix:domain (${domain}) when matrix:delegation is "none" (federation then reaches ${domain}:8448 directly); or use delegation "apex" or "external" to serve Matrix from ${homeserverHost}`,
        );
    }
    const database = v.database as { machine?: { ipv4?: unknown } } | undefined;
    const machine = v.machine as { ipv4?: unknown } | undefined;
    if (database?.machine?.ipv4 !== undefined && database.machine.ipv4 === machine?.ipv4) {
        problems.push(
            `matrix:database.machine.ipv4: is matrix:machine.ipv4 (${String(machine.ipv4)}); leave matrix:database out to keep PostgreSQL on the Synapse host, or name another host`,
        );
    }
    const auth = v.auth as { enabled?: unknown } | undefined;
    if (database !== undefined && auth !== undefined && auth.enabled !== false && auth.enabled !== "false") {
        problems.push(
            "matrix:auth: MAS keeps its database beside Synapse's, which matrix:database moves to another host; MAS with a database host is not supported yet: leave matrix:auth out, or keep PostgreSQL on the Synapse host",
        );
    }
    const email = (v.monitoring as { email?: { username?: unknown } } | undefined)?.email;
    const smtpPassword = (v.secrets as { smtpPassword?: unknown } | undefined)?.smtpPassword;
    if (email?.username !== undefined && smtpPassword === undefined) {
        problems.push(
            "matrix:secrets.smtpPassword: required with matrix:monitoring.email.username; set it with pulumi config set --secret --path matrix:secrets.smtpPassword <password>",
        );
    } else if (email?.username === undefined && smtpPassword !== undefined) {
        problems.push(
            "matrix:monitoring.email.username: required with matrix:secrets.smtpPassword; set the SMTP login, or remove the password",
        );
    }
    problems.push(...portClashes(v));
    const synapse = v.synapse as { extraConfig?: unknown } | undefined;
    if (synapse && typeof synapse.extraConfig === "object" && synapse.extraConfig !== null) {
        for (const key of Object.keys(synapse.extraConfig)) {
            const managed = MANAGED_SYNAPSE_KEYS[key];
            if (managed !== undefined) {
                problems.push(`matrix:synapse.extraConfig.${key}: is managed by the program; ${managed}`);
            }
        }
    }
    return problems;
}

/**
 * Two services on one port: the ports each enabled key claims (defaults filled in), by protocol.
 * Reported on the raw values so a clash shows beside other problems.
 */
export function portClashes(v: Record<string, unknown>): string[] {
    const on = (x: unknown): Record<string, unknown> | undefined =>
        typeof x === "object" &&
        x !== null &&
        (x as { enabled?: unknown }).enabled !== false &&
        (x as { enabled?: unknown }).enabled !== "false"
            ? (x as Record<string, unknown>)
            : undefined;
    const num = (x: unknown, d: number) =>
        typeof x === "number" ? x : typeof x === "string" && /^[0-9]+$/.test(x) ? Number(x) : d;
    const claims: { key: string; proto: "tcp" | "udp"; from: number; to: number }[] = [];
    const claim = (key: string, proto: "tcp" | "udp", from: number, to = from) => claims.push({ key, proto, from, to });
    const machine = v.machine as { sshPort?: unknown } | undefined;
    claim("matrix:machine.sshPort", "tcp", num(machine?.sshPort, DEFAULTS.machine.sshPort));
    for (const p of [80, 443, ...(v.delegation === "none" ? [8448] : [])]) claim(`nginx (${p})`, "tcp", p);
    // The program's own listeners on loopback: a service bound to every address on one of these
    // ports would not start (or Synapse, LiveKit, Prometheus would not).
    claim(`Synapse (127.0.0.1:${SYNAPSE_LISTEN.port})`, "tcp", SYNAPSE_LISTEN.port);
    const monitoringOn = (v.monitoring as { enabled?: unknown } | undefined)?.enabled;
    if (monitoringOn === true || monitoringOn === "true") {
        for (const [name, p] of Object.entries(METRICS_PORTS)) claim(`monitoring ${name} (127.0.0.1:${p})`, "tcp", p);
    }
    const rtc = on(v.rtc);
    if (rtc) {
        claim(`LiveKit's API (127.0.0.1:${RTC_LOOPBACK.livekit})`, "tcp", RTC_LOOPBACK.livekit);
        claim(`lk-jwt-service (127.0.0.1:${RTC_LOOPBACK.jwt})`, "tcp", RTC_LOOPBACK.jwt);
        claim("matrix:rtc.udpPort", "udp", num(rtc.udpPort, DEFAULTS.rtc.udpPort));
        claim("matrix:rtc.tcpPort", "tcp", num(rtc.tcpPort, DEFAULTS.rtc.tcpPort));
        if (rtc.turnUdpPort !== undefined) claim("matrix:rtc.turnUdpPort", "udp", num(rtc.turnUdpPort, 0));
    }
    if (on(v.auth)) {
        claim(`MAS (127.0.0.1:${MAS_LOOPBACK.web})`, "tcp", MAS_LOOPBACK.web);
        claim(`MAS's health and admin API (127.0.0.1:${MAS_LOOPBACK.internal})`, "tcp", MAS_LOOPBACK.internal);
    }
    const turn = on(v.turn);
    if (turn) {
        const port = num(turn.port, DEFAULTS.turn.port);
        claim("matrix:turn.port", "udp", port);
        claim("matrix:turn.port", "tcp", port);
        claim("matrix:turn.tlsPort", "tcp", num(turn.tlsPort, DEFAULTS.turn.tlsPort));
        const relay = (turn.relayPorts ?? {}) as { min?: unknown; max?: unknown };
        claim(
            "matrix:turn.relayPorts",
            "udp",
            num(relay.min, DEFAULTS.turn.relayPorts.min),
            num(relay.max, DEFAULTS.turn.relayPorts.max),
        );
    }
    const problems: string[] = [];
    claims.forEach((a, i) => {
        const b = claims.slice(0, i).find((c) => c.proto === a.proto && c.from <= a.to && a.from <= c.to);
        if (b && b.key !== a.key) {
            problems.push(
                `${a.key}: ${a.proto.toUpperCase()} port ${a.from === a.to ? a.from : `${a.from}-${a.to}`} is taken by ${b.key}; choose another port`,
            );
        }
    });
    return problems;
}
