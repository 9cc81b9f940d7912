// The stack configuration: one schema, validated before any resource is registered.
//
// `parseStackConfig` is pure: it takes the raw key/value map that Pulumi holds for the stack
// (what `pulumi.runtime.allConfig()` returns) and yields a typed object with every default
// filled in, or throws a `ConfigError` that lists every bad key at once.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { SSH_DEFAULTS } from "./lib/ssh";
import type { PreflightSettings } from "./lib/preflight";
import { WORKER_PRESETS, type WorkerPreset } from "./render/workers";
import { SYNAPSE_LISTEN } from "./render/synapseBase";
import { METRICS_PORTS } from "./render/monitoring";
import { RTC_LOOPBACK } from "./render/rtc";

/** The stack config keys the server's SSH connection is built from (read again by managed files). */
export const HOST_CONFIG_KEYS = { machine: "matrix:machine", privateKey: "matrix:sshPrivateKey" } as const;
/** The same for the database host (matrix:database.machine), with the same key. */
export const DATABASE_HOST_CONFIG_KEYS = {
    machine: "matrix:database",
    field: "machine",
    privateKey: "matrix:sshPrivateKey",
} as const;

/** Synapse release this program is tested with; stacks should pin their own (README). */
export const DEFAULT_SYNAPSE_VERSION = "1.163.2";
export const LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory";
export const LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";

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
    turn_uris: "set matrix:turn",
    turn_shared_secret: "set matrix:turn (the program generates the secret)",
    turn_shared_secret_path: "set matrix:turn (the program generates the secret)",
};

/** The calls backend this program is tested with (README: Calls). */
export const DEFAULT_LIVEKIT_URL = (version: string) =>
    `https://github.com/livekit/livekit/releases/download/v${version}/livekit_${version}_linux_amd64.tar.gz`;
export const DEFAULT_JWT_SERVICE_URL = (version: string) =>
    `https://github.com/element-hq/lk-jwt-service/releases/download/v${version}/lk-jwt-service_linux_amd64`;

const HOSTNAME = /^(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
const hostname = (example: string) =>
    z.string({ error: `expected a host name such as ${example}` }).regex(HOSTNAME, {
        error: `expected a lower-case DNS name with at least two labels, such as ${example}`,
    });

/** Sizes both Synapse (`parse_size`: bytes, K or M) and nginx (`client_max_body_size`) read alike. */
const uploadSize = z
    .string({ error: 'expected a size such as "50M" (bytes, or a number followed by K or M)' })
    .regex(/^[1-9][0-9]{0,9}[KM]?$/, {
        error: 'expected a size such as "50M" (bytes, or a number followed by K or M; no G, no spaces)',
    });

/** Pulumi may hand nested numbers and booleans over as strings (`config set --path`). */
const fromString = (v: unknown) =>
    typeof v !== "string" ? v : v === "true" ? true : v === "false" ? false : /^-?[0-9]+$/.test(v) ? Number(v) : v;
const bool = () => z.preprocess(fromString, z.boolean({ error: "expected true or false" }));
const int = (error: string) => z.preprocess(fromString, z.number({ error }).int({ error }));

const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, {
    error: "expected a PostgreSQL identifier: lower-case letters, digits and '_', not starting with a digit, at most 63 characters",
});

/**
 * Why no host can be reached at an IPv4 address that parses (undefined when one can): the address
 * is the SSH target, the A records' value and what calls announce, so it must be a host's own.
 */
export function unusableIpv4(a: string): string | undefined {
    const [o1 = 0, o2 = 0] = a.split(".").map(Number);
    if (a === "0.0.0.0" || o1 === 0) return 'is not a host\'s address (0.0.0.0/8 means "this network")';
    if (o1 === 127) return "is loopback: the server's own name for itself, no record or client can reach it";
    if (o1 === 169 && o2 === 254)
        return "is link-local: it does not leave the link, and DNS records cannot point at it";
    if (o1 >= 224 && o1 <= 239) return "is a multicast group, not a host";
    if (o1 >= 240) return "is reserved (240.0.0.0/4) or the broadcast address, not a host";
    return undefined;
}

/** The same for IPv6: unspecified, loopback, link-local and multicast addresses. */
export function unusableIpv6(a: string): string | undefined {
    const x = a.toLowerCase();
    if (/^[0:]+$/.test(x)) return "is the unspecified address (::), not a host's";
    if (/^[0:]+:1$/.test(x)) return "is loopback (::1): no record or client can reach it";
    if (/^fe[89ab][0-9a-f]?:/.test(x)) return "is link-local (fe80::/10): DNS records cannot point at it";
    if (x.startsWith("ff")) return "is a multicast group (ff00::/8), not a host";
    return undefined;
}

const hostIpv4 = (example: string) =>
    z.ipv4({ error: `expected an IPv4 address such as ${example}` }).superRefine((a, ctx) => {
        const why = unusableIpv4(a);
        if (why)
            ctx.addIssue({ code: "custom", message: `${a} ${why}; set the host's own address, such as ${example}` });
    });
const hostIpv6 = z.ipv6({ error: "expected an IPv6 address such as 2001:db8::10" }).superRefine((a, ctx) => {
    const why = unusableIpv6(a);
    if (why)
        ctx.addIssue({
            code: "custom",
            message: `${a} ${why}; set the host's own global address, such as 2001:db8::10`,
        });
});

const machineSchema = z.strictObject({
    /** IPv4 address the host is reached at over SSH; the A records point here. */
    ipv4: hostIpv4("203.0.113.10"),
    /** IPv6 address of the host; when set, AAAA records are created too. */
    ipv6: hostIpv6.optional(),
    sshPort: int("expected a port number from 1 to 65535")
        .refine((p) => p >= 1 && p <= 65535, { error: "expected a port number from 1 to 65535" })
        .default(SSH_DEFAULTS.port),
    sshUser: z
        .string()
        .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: "expected a Unix user name such as root" })
        .default(SSH_DEFAULTS.user),
    /** The host's public key ("ssh-ed25519 AAAA..."); when set, SSH refuses any other host. */
    sshHostKey: z
        .string()
        .regex(/^(ssh-[a-z0-9-]+|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( .*)?$/, {
            error: 'expected an OpenSSH public key line such as "ssh-ed25519 AAAAC3Nza..."',
        })
        .optional(),
});

const dnsSchema = z.strictObject({
    /** Cloudflare zone id of the zone holding the domain (32 hex digits). */
    zoneId: z.string().regex(/^[0-9a-f]{32}$/, { error: "expected a Cloudflare zone id: 32 lower-case hex digits" }),
    /** Create the apex record too (only used with delegation "apex"). */
    manageApex: bool().default(true),
    /** Record TTL in seconds; 1 means Cloudflare's "auto". */
    ttl: int("expected 1 (auto) or a number of seconds from 60 to 86400")
        .refine((t) => t === 1 || (t >= 60 && t <= 86400), {
            error: "expected 1 (auto) or a number of seconds from 60 to 86400",
        })
        .default(1),
});

const pem = (what: string) =>
    z.string().refine((s) => s.includes("-----BEGIN CERTIFICATE-----"), {
        error: `expected PEM text containing -----BEGIN CERTIFICATE----- (${what})`,
    });

const acmeSchema = z.strictObject({
    /** Contact address for the ACME account (expiry notices). */
    email: z.email({ error: "expected an e-mail address for the ACME account, such as admin@example.org" }),
    /** ACME directory URL; Let's Encrypt production by default. */
    directoryUrl: z
        .url({ protocol: /^https$/, error: "expected an https:// ACME directory URL" })
        .default(LETSENCRYPT_PRODUCTION),
    /** PEM CA bundle that signs a private ACME server's own TLS certificate. */
    caBundle: pem("the CA that signs the ACME server's own TLS certificate").optional(),
});

const workerCount = (max: number, what: string) =>
    int(`expected a whole number of ${what} from 0 to ${max}`)
        .refine((n) => n >= 0 && n <= max, { error: `expected a whole number of ${what} from 0 to ${max}` })
        .default(0);

const BACKGROUND_ERROR =
    "expected 0 (background tasks on the main process) or 1 (on a worker of their own); Synapse runs them on exactly one process";

/** matrix:synapse.workers: a preset name, or counts per kind (README: Workers). */
const workersSchema = z.preprocess(
    (v) => (typeof v === "string" && Object.hasOwn(WORKER_PRESETS, v) ? { ...WORKER_PRESETS[v as WorkerPreset] } : v),
    z.strictObject(
        {
            sync: workerCount(8, "/sync workers"),
            client: workerCount(8, "client and federation reader workers"),
            federationSender: workerCount(4, "federation senders"),
            // The first runs the media background jobs (media_instance_running_background_jobs).
            media: workerCount(4, "media workers"),
            background: int(BACKGROUND_ERROR)
                .refine((n) => n === 0 || n === 1, { error: BACKGROUND_ERROR })
                .default(0),
        },
        {
            error: `expected ${Object.keys(WORKER_PRESETS)
                .map((k) => `"${k}"`)
                .join(
                    " or ",
                )}, or counts such as {"sync": 2, "client": 1, "federationSender": 1, "media": 1, "background": 1}`,
        },
    ),
);

/** A lifetime as Synapse's parse_duration reads it, in days, weeks or years; or "forever". */
const LIFETIME_ERROR = 'expected "forever" or a lifetime such as "90d", "8w" or "1y" (days, weeks or years)';
const lifetime = z
    .string({ error: LIFETIME_ERROR })
    .regex(/^(forever|[1-9][0-9]{0,4}[dwy])$/, { error: LIFETIME_ERROR });

/** matrix:synapse.mediaRetention: how long media is kept after its last access (README: Media retention). */
const mediaRetentionSchema = z.strictObject({
    /** Media this server's users uploaded. */
    local: lifetime.default("forever"),
    /** Copies of other servers' media, fetched again on demand once purged. */
    remote: lifetime.default("90d"),
});

const synapseSchema = z.strictObject({
    version: z
        .string({ error: 'expected a matrix-synapse release as a string, such as "1.163.2"' })
        .regex(/^[0-9]+\.[0-9]+\.[0-9]+(rc[0-9]+)?$/, {
            error: 'expected a matrix-synapse release such as "1.163.2" (no leading "v")',
        })
        .default(DEFAULT_SYNAPSE_VERSION),
    enableRegistration: bool().default(false),
    maxUploadSize: uploadSize.default("50M"),
    reportStats: bool().default(false),
    extraConfig: z.record(z.string(), z.unknown(), { error: "expected a map of homeserver.yaml keys" }).default({}),
    wheelhouse: z.string().min(1).optional(),
    healthTimeoutSeconds: int("expected a whole number of seconds from 10 to 3600")
        .refine((t) => t >= 10 && t <= 3600, { error: "expected a whole number of seconds from 10 to 3600" })
        .default(300),
    workers: workersSchema.default({ ...WORKER_PRESETS.none }),
    mediaRetention: mediaRetentionSchema.prefault({}),
});

const elementSchema = z.strictObject({
    version: z
        .string({ error: 'expected an Element Web release as a string, such as "1.12.29"' })
        .regex(/^[0-9]+\.[0-9]+\.[0-9]+(-rc\.[0-9]+)?$/, {
            error: 'expected an Element Web release such as "1.12.29" (no leading "v")',
        }),
    sha256: z
        .string({ error: "expected the SHA-256 of the tarball as a string (quote it in YAML)" })
        .regex(/^[0-9a-f]{64}$/, {
            error: "expected the SHA-256 of the release tarball: 64 lower-case hex digits",
        }),
    url: z.url({ protocol: /^https?$/, error: "expected an http(s):// URL of the release tarball" }).optional(),
    brand: z.string().min(1).default("Element"),
    disableCustomUrls: bool().default(false),
});

/** A pinned release file: its version, its SHA-256 (checked before install) and where it is. */
const releaseSchema = (what: string, example: string) =>
    z.strictObject({
        version: z
            .string({ error: `expected a ${what} release as a string, such as "${example}"` })
            .regex(/^[0-9]+\.[0-9]+\.[0-9]+$/, {
                error: `expected a ${what} release such as "${example}" (no leading "v")`,
            }),
        sha256: z
            .string({ error: "expected the SHA-256 of the release file as a string (quote it in YAML)" })
            .regex(/^[0-9a-f]{64}$/, { error: "expected the SHA-256 of the release file: 64 lower-case hex digits" }),
        url: z.url({ protocol: /^https?$/, error: "expected an http(s):// URL of the release file" }).optional(),
    });

const port = (what: string) =>
    int(`expected ${what} from 1024 to 65535`).refine((p) => p >= 1024 && p <= 65535, {
        error: `expected ${what} from 1024 to 65535`,
    });

/** matrix:rtc: MatrixRTC (Element Call) with LiveKit (README: Calls). */
const rtcSchema = z.strictObject({
    enabled: bool().default(true),
    /** livekit-server (the SFU): the linux_amd64 tarball of a LiveKit release. */
    livekit: releaseSchema("livekit-server", "1.13.5"),
    /** lk-jwt-service (the MatrixRTC authorisation service): its linux_amd64 binary. */
    jwtService: releaseSchema("lk-jwt-service", "0.5.0"),
    /** ICE over UDP: every call's media on this one port. */
    udpPort: port("a UDP port").default(7882),
    /** ICE over TCP, for clients whose UDP is blocked. */
    tcpPort: port("a TCP port").default(7881),
    /** LiveKit's embedded TURN server on this UDP port. Default: off. */
    turnUdpPort: port("a UDP port").optional(),
    /** Other homeservers whose users may start calls here (this server's users always can). */
    fullAccessHomeservers: z
        .array(hostname("other.example.org"), {
            error: 'expected a list of server names such as ["other.example.org"]',
        })
        .default([]),
});

/** matrix:turn: coturn for legacy 1:1 calls (README: Calls). */
const turnSchema = z
    .strictObject({
        enabled: bool().default(true),
        /** TURN over UDP and TCP. */
        port: port("a port").default(3478),
        /** TURN over TLS (turns:), with the homeserver host's certificate. */
        tlsPort: port("a TCP port").default(5349),
        /** The UDP ports relayed media uses. */
        relayPorts: z
            .strictObject({ min: port("a UDP port").default(49152), max: port("a UDP port").default(49251) })
            .prefault({}),
        /** How long the credentials Synapse hands out stay valid. */
        userLifetime: z
            .string()
            .regex(/^[1-9][0-9]{0,3}[mhd]$/, { error: 'expected a lifetime such as "1h" (minutes, hours or days)' })
            .default("1h"),
    })
    .refine((t) => t.relayPorts.min <= t.relayPorts.max, {
        error: "relayPorts.min must not exceed relayPorts.max",
        path: ["relayPorts"],
    });

const postgresSchema = z.strictObject({
    database: sqlIdentifier.default("synapse"),
    user: sqlIdentifier.default("synapse"),
});

const backupSchema = z.strictObject({
    /** systemd OnCalendar expression. */
    schedule: z
        .string()
        .regex(/^[A-Za-z0-9 ,:*./~+-]{1,100}$/, {
            error: 'expected a systemd OnCalendar expression such as "daily" or "*-*-* 03:30"',
        })
        .default("daily"),
    retention: int("expected a whole number of backups to keep, from 1 to 365")
        .refine((n) => n >= 1 && n <= 365, { error: "expected a whole number of backups to keep, from 1 to 365" })
        .default(7),
});

const federationSchema = z.strictObject({
    /** PEM bundle of the CAs whose certificates federation trusts (instead of the system's). */
    caBundle: pem("the CA certificates other homeservers' certificates chain to").optional(),
    /** Server names federation is limited to (a closed federation). */
    allowedServers: z
        .array(hostname("other.example.org"), {
            error: 'expected a list of server names such as ["other.example.org"]',
        })
        .optional(),
    /** Private address ranges federation may reach (Synapse refuses private addresses otherwise). */
    allowedIpRanges: z
        .array(z.union([z.cidrv4(), z.cidrv6()], { error: "expected an address range such as 10.0.0.0/8" }), {
            error: 'expected a list of address ranges such as ["10.0.0.0/8"]',
        })
        .optional(),
});

const tcpPort = int("expected a TCP port number from 1 to 65535").refine((p) => p >= 1 && p <= 65535, {
    error: "expected a TCP port number from 1 to 65535",
});

/** PostgreSQL on a host of its own (README: The database on its own host). */
const databaseSchema = z.strictObject({
    /** The database host, reached over SSH like matrix:machine; Synapse connects to its ipv4. */
    machine: machineSchema,
    /** Where the database host sees Synapse's connections come from. Default: matrix:machine.ipv4. */
    synapseAddress: hostIpv4("10.0.0.2").optional(),
});

const firewallSchema = z.strictObject({
    /** Manage an nftables firewall that lets in only SSH, 80, 443 (8448 with delegation "none"). */
    enabled: bool().default(true),
    /** More inbound TCP ports to let in (other services on the host). */
    allowTcpPorts: z.array(tcpPort, { error: "expected a list of TCP port numbers such as [8080]" }).default([]),
});

const DURATION_ERROR = 'expected a duration such as "15d" or "12w" (a whole number of hours, days or weeks)';

/** matrix:monitoring (README: Metrics and alerts). */
const monitoringSchema = z.strictObject({
    enabled: bool().default(false),
    /** How long Prometheus keeps samples (--storage.tsdb.retention.time). */
    retention: z
        .string({ error: DURATION_ERROR })
        .regex(/^[1-9][0-9]{0,4}[hdw]$/, { error: DURATION_ERROR })
        .default("15d"),
    /** How often Prometheus scrapes and evaluates the alert rules. */
    scrapeInterval: z
        .string({ error: 'expected an interval such as "30s" or "1m"' })
        .regex(/^([1-9][0-9]?s|[1-5]m)$/, { error: 'expected an interval from "1s" to "5m", such as "30s"' })
        .default("30s"),
    /** Where Alertmanager sends alerts; without it, alerts are only shown (Alertmanager's API). */
    email: z
        .strictObject({
            to: z.email({ error: "expected the address alerts go to, such as ops@example.org" }),
            from: z.email({ error: "expected the sender address, such as alertmanager@example.org" }),
            /** host:port of the SMTP server (STARTTLS is required). */
            smarthost: z.string().regex(/^[A-Za-z0-9.-]+:[0-9]{1,5}$/, {
                error: "expected the SMTP server as host:port, such as smtp.example.org:587",
            }),
            /** SMTP login; its password is matrix:secrets.smtpPassword. */
            username: z.string().min(1).optional(),
        })
        .optional(),
});

/** A contact of /.well-known/matrix/support (at least a Matrix ID or an e-mail address). */
const supportContactSchema = z
    .strictObject({
        matrixId: z
            .string()
            .regex(/^@[a-z0-9._=\/+-]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, {
                error: "expected a Matrix user ID such as @admin:example.org",
            })
            .optional(),
        email: z.email({ error: "expected an e-mail address such as admin@example.org" }).optional(),
        role: z.enum(["admin", "security"], { error: 'expected "admin" or "security"' }).default("admin"),
    })
    .refine((c) => c.matrixId !== undefined || c.email !== undefined, {
        error: "each contact needs a matrixId or an email (or both)",
    });

/** matrix:support: /.well-known/matrix/support (README: Support contacts). */
const supportSchema = z
    .strictObject({
        contacts: z
            .array(supportContactSchema, {
                error: 'expected a list such as [{"matrixId": "@admin:example.org", "role": "admin"}]',
            })
            .default([]),
        page: z.url({ protocol: /^https?$/, error: "expected the support page's https:// URL" }).optional(),
    })
    .refine((s) => s.contacts.length > 0 || s.page !== undefined, {
        error: "needs contacts, a page, or both (leave matrix:support out to serve no support document)",
    });

/** Localparts the program creates: lower-case letters, digits, '.', '_', '-'. */
export const USER_NAME = /^[a-z0-9._-]{1,64}$/;

const userSchema = z.strictObject({
    /** Matrix localpart: @<name>:<domain>. */
    name: z.string().regex(USER_NAME, {
        error: "expected a localpart of lower-case letters, digits, '.', '_' or '-' (at most 64)",
    }),
    admin: bool().default(false),
});

/** Secrets a stack may bring instead of generating them (moving an existing server, say). */
export const PROVIDED_SECRETS = [
    "registrationSharedSecret",
    "macaroonSecretKey",
    "formSecret",
    "databasePassword",
] as const;
export type ProvidedSecret = (typeof PROVIDED_SECRETS)[number];

const secretsSchema = z.strictObject({
    ...(Object.fromEntries(
        PROVIDED_SECRETS.map((k) => [
            k,
            z
                .string({ error: "expected a non-empty string" })
                .min(1, { error: "expected a non-empty string; remove the key to have it generated" })
                .optional(),
        ]),
    ) as Record<ProvidedSecret, z.ZodOptional<z.ZodString>>),
    /** The SMTP password of matrix:monitoring.email.username (never generated). */
    smtpPassword: z.string({ error: "expected a non-empty string" }).min(1).optional(),
});

const delegationSchema = z.enum(["apex", "external", "none"], {
    error: 'expected one of "apex", "external", "none"',
});

const stackSchema = z.strictObject({
    domain: hostname("example.org"),
    homeserverHost: hostname("matrix.example.org").optional(),
    elementHost: hostname("element.example.org").optional(),
    machine: machineSchema,
    sshPrivateKey: z.string().refine((k) => /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(k), {
        error: "expected an OpenSSH/PEM private key (set it with: pulumi config set --secret matrix:sshPrivateKey < ~/.ssh/id_ed25519)",
    }),
    dns: dnsSchema.optional(),
    delegation: delegationSchema.default("apex"),
    acme: acmeSchema,
    synapse: synapseSchema.prefault({}),
    element: elementSchema,
    postgres: postgresSchema.prefault({}),
    database: databaseSchema.optional(),
    secrets: secretsSchema.optional(),
    purgeOnDestroy: bool().default(false),
    backup: backupSchema.prefault({}),
    firewall: firewallSchema.prefault({}),
    federation: federationSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    support: supportSchema.optional(),
    rtc: rtcSchema.optional(),
    turn: turnSchema.optional(),
    users: z
        .array(userSchema, { error: 'expected a list such as [{"name": "alice", "admin": true}]' })
        .refine((u) => new Set(u.map((x) => x.name)).size === u.length, { error: "names must be unique" })
        .default([]),
});

export type Delegation = z.infer<typeof delegationSchema>;

/** The validated stack configuration, defaults filled in. Contains no secrets. */
export interface StackConfig {
    domain: string;
    homeserverHost: string;
    elementHost: string;
    machine: z.infer<typeof machineSchema>;
    dns?: z.infer<typeof dnsSchema>;
    delegation: Delegation;
    acme: z.infer<typeof acmeSchema>;
    synapse: z.infer<typeof synapseSchema>;
    element: z.infer<typeof elementSchema> & { url: string };
    postgres: z.infer<typeof postgresSchema>;
    /** PostgreSQL on another host (README: The database on its own host); none: on this one. */
    database?: z.infer<typeof databaseSchema>;
    /** Scheduled backups (README: Backups). */
    backup: z.infer<typeof backupSchema>;
    /** The host firewall (README: Firewall). */
    firewall: z.infer<typeof firewallSchema>;
    /** Who federation trusts and reaches (README: Closed federation). */
    federation: z.infer<typeof federationSchema>;
    /** Prometheus, exporters and Alertmanager (README: Metrics and alerts). */
    monitoring: z.infer<typeof monitoringSchema>;
    /** /.well-known/matrix/support (README: Support contacts); none: not served. */
    support?: z.infer<typeof supportSchema>;
    /** MatrixRTC with LiveKit (README: Calls); none: off. */
    rtc?: z.infer<typeof rtcSchema> & { livekit: { url: string }; jwtService: { url: string } };
    /** coturn for legacy 1:1 calls (README: Calls); none: off. */
    turn?: z.infer<typeof turnSchema>;
    /** Accounts the program creates once each (README: Users). */
    users: z.infer<typeof userSchema>[];
    /** `pulumi destroy` also deletes the database, media store, signing key and config. */
    purgeOnDestroy: boolean;
    /** Which secrets the stack brings (their values are read as secret Outputs, never kept here). */
    providedSecrets: Record<ProvidedSecret, boolean>;
}

/** Every problem with the stack configuration, in one message. */
export class ConfigError extends Error {
    constructor(readonly problems: string[]) {
        super(
            `Invalid stack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was deployed:\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "ConfigError";
    }
}

function defaultHomeserverHost(domain: string, delegation: unknown): string {
    return delegation === "none" ? domain : `matrix.${domain}`;
}

/** Checks across keys; they run on the raw values so they report even when other keys are bad. */
function crossKeyProblems(v: Record<string, unknown>): string[] {
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
function portClashes(v: Record<string, unknown>): string[] {
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
    claim("matrix:machine.sshPort", "tcp", num(machine?.sshPort, SSH_DEFAULTS.port));
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
        claim("matrix:rtc.udpPort", "udp", num(rtc.udpPort, 7882));
        claim("matrix:rtc.tcpPort", "tcp", num(rtc.tcpPort, 7881));
        if (rtc.turnUdpPort !== undefined) claim("matrix:rtc.turnUdpPort", "udp", num(rtc.turnUdpPort, 0));
    }
    const turn = on(v.turn);
    if (turn) {
        const port = num(turn.port, 3478);
        claim("matrix:turn.port", "udp", port);
        claim("matrix:turn.port", "tcp", port);
        claim("matrix:turn.tlsPort", "tcp", num(turn.tlsPort, 5349));
        const relay = (turn.relayPorts ?? {}) as { min?: unknown; max?: unknown };
        claim("matrix:turn.relayPorts", "udp", num(relay.min, 49152), num(relay.max, 49251));
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

/** Keys that hold a JSON object, boolean or number; Pulumi hands every value over as a string. */
const STRUCTURED_KEYS = new Set([
    "machine",
    "dns",
    "acme",
    "synapse",
    "element",
    "postgres",
    "database",
    "secrets",
    "users",
    "backup",
    "firewall",
    "federation",
    "monitoring",
    "support",
    "rtc",
    "turn",
]);

/** Keys whose values must be stored encrypted (`pulumi config set --secret`). */
const SECRET_KEYS = ["sshPrivateKey", "secrets"];

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
    let v = root;
    for (const k of path) {
        if (typeof v !== "object" || v === null) return undefined;
        v = (v as Record<PropertyKey, unknown>)[k];
    }
    return v;
}

function keyName(path: readonly PropertyKey[]): string {
    const [top, ...rest] = path.map(String);
    return `matrix:${top}${rest.length ? "." + rest.join(".") : ""}`;
}

export interface ParseOptions {
    /** Whether a Cloudflare API token is available (cloudflare:apiToken or CLOUDFLARE_API_TOKEN). */
    cloudflareToken: boolean;
    /** Whether a config key (`matrix:...`) is stored as a secret. Default: every key is. */
    isSecret?: (key: string) => boolean;
}

/**
 * Validate the raw stack config (`namespace:key` → string, as Pulumi stores it).
 * Throws a ConfigError naming every bad key and the expected form.
 */
export function parseStackConfig(raw: Record<string, string>, opts: ParseOptions): StackConfig {
    const problems: string[] = [];
    const values: Record<string, unknown> = {};
    for (const [fullKey, value] of Object.entries(raw)) {
        const sep = fullKey.indexOf(":");
        if (fullKey.slice(0, sep) !== "matrix") continue;
        const key = fullKey.slice(sep + 1);
        if (STRUCTURED_KEYS.has(key)) {
            try {
                values[key] = JSON.parse(value);
            } catch {
                problems.push(
                    `matrix:${key}: expected an object (set it in the stack file or with pulumi config set --path)`,
                );
            }
        } else {
            values[key] = value;
        }
    }
    const result = stackSchema.safeParse(values);
    if (!result.success) {
        for (const issue of result.error.issues) {
            if (issue.code === "unrecognized_keys") {
                for (const k of issue.keys) {
                    problems.push(
                        `${keyName([...issue.path, k])}: unknown key; check the spelling against the README's config table`,
                    );
                }
            } else if (issue.code === "invalid_type" && valueAt(values, issue.path) === undefined) {
                problems.push(`${keyName(issue.path)}: required; ${requiredHint(issue.path)}`);
            } else {
                problems.push(`${keyName(issue.path)}: ${issue.message}`);
            }
        }
    }
    problems.push(...crossKeyProblems(values));
    for (const key of SECRET_KEYS) {
        if (values[key] !== undefined && opts.isSecret && !opts.isSecret(`matrix:${key}`)) {
            problems.push(
                `matrix:${key}: is stored in plain text; set it again with pulumi config set --secret${key === "secrets" ? " --path matrix:secrets.<name>" : ` matrix:${key}`}`,
            );
        }
    }
    if (values.dns !== undefined && !opts.cloudflareToken) {
        problems.push(
            "matrix:dns: needs a Cloudflare API token; set it with: pulumi config set --secret cloudflare:apiToken <token> (or remove matrix:dns to manage DNS elsewhere)",
        );
    }
    if (problems.length > 0 || !result.success) throw new ConfigError(problems);
    // The key itself is read again as a secret Output (loadSshPrivateKey); it is only checked here.
    const { sshPrivateKey: _checkedOnly, secrets, ...c } = result.data;
    return {
        ...c,
        providedSecrets: Object.fromEntries(PROVIDED_SECRETS.map((k) => [k, secrets?.[k] !== undefined])) as Record<
            ProvidedSecret,
            boolean
        >,
        homeserverHost: c.homeserverHost ?? defaultHomeserverHost(c.domain, c.delegation),
        elementHost: c.elementHost ?? `element.${c.domain}`,
        element: {
            ...c.element,
            url:
                c.element.url ??
                `https://github.com/element-hq/element-web/releases/download/v${c.element.version}/element-v${c.element.version}.tar.gz`,
        },
        // Off is the same as absent; the settings stay in the stack for the next time.
        rtc:
            c.rtc && c.rtc.enabled
                ? {
                      ...c.rtc,
                      livekit: {
                          ...c.rtc.livekit,
                          url: c.rtc.livekit.url ?? DEFAULT_LIVEKIT_URL(c.rtc.livekit.version),
                      },
                      jwtService: {
                          ...c.rtc.jwtService,
                          url: c.rtc.jwtService.url ?? DEFAULT_JWT_SERVICE_URL(c.rtc.jwtService.version),
                      },
                  }
                : undefined,
        turn: c.turn && c.turn.enabled ? c.turn : undefined,
    };
}

const REQUIRED_HINTS: Record<string, string> = {
    domain: "the Matrix server name, e.g. pulumi config set matrix:domain example.org",
    machine: "the host to deploy to, e.g. pulumi config set --path matrix:machine.ipv4 203.0.113.10",
    sshPrivateKey: "pulumi config set --secret matrix:sshPrivateKey < ~/.ssh/id_ed25519",
    acme: "pulumi config set --path matrix:acme.email admin@example.org",
    element:
        "pulumi config set --path matrix:element.version 1.12.29 and matrix:element.sha256 <sha256 of the tarball>",
};

function requiredHint(path: readonly PropertyKey[]): string {
    const top = String(path[0]);
    if (path.length === 1 && REQUIRED_HINTS[top]) return `set ${REQUIRED_HINTS[top]}`;
    return `set it with pulumi config set --path ${keyName(path)} <value>`;
}

/** Read and validate this stack's config; throws before any resource exists. */
export function loadStackConfig(): StackConfig {
    const raw = pulumi.runtime.allConfig();
    const cloudflareToken = Boolean(raw["cloudflare:apiToken"] || process.env.CLOUDFLARE_API_TOKEN);
    // Not in the SDK's typings, but exported by its runtime.
    const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
    return parseStackConfig(raw, { cloudflareToken, isSecret: runtime.isConfigSecret });
}

/** A secret the stack brings (`matrix:secrets.<name>`), as a secret Output. */
export function loadProvidedSecret(name: ProvidedSecret): pulumi.Output<string> {
    return new pulumi.Config("matrix")
        .requireSecretObject<Partial<Record<ProvidedSecret, string>>>("secrets")
        .apply((s) => s[name] ?? "");
}

/** The SMTP password Alertmanager logs in with (matrix:secrets.smtpPassword), as a secret Output. */
export function loadSmtpPassword(): pulumi.Output<string> {
    return new pulumi.Config("matrix")
        .requireSecretObject<{ smtpPassword?: string }>("secrets")
        .apply((s) => s.smtpPassword ?? "");
}

/** The SSH private key, as a secret Output (never part of StackConfig). */
export function loadSshPrivateKey(): pulumi.Output<string> {
    return new pulumi.Config("matrix").requireSecret("sshPrivateKey");
}

/** What the preflight checks on each host of the stack (lib/preflight.ts); `dryRun` is the caller's. */
export function preflightSettings(c: StackConfig, role: "homeserver" | "database"): PreflightSettings {
    const postgres = { database: c.postgres.database };
    if (role === "database") return { key: "matrix:database.machine", firewall: c.firewall.enabled, postgres };
    const names = publicHostnames(c).certificates;
    return {
        key: "matrix:machine",
        web: { names: [names.homeserver, names.element, ...(names.apex ? [names.apex] : [])] },
        firewall: c.firewall.enabled,
        postgres: c.database ? undefined : postgres,
        backupSchedule: c.backup.schedule,
    };
}

/** Public names by role: each gets a certificate; `dnsRecords` says which get a Cloudflare record. */
export function publicHostnames(c: StackConfig): {
    certificates: { homeserver: string; element: string; apex?: string };
    dnsRecords: { homeserver: string; element: string; apex?: string };
} {
    const apex = c.delegation === "apex" ? { apex: c.domain } : {};
    const certificates = { homeserver: c.homeserverHost, element: c.elementHost, ...apex };
    const dnsRecords = { homeserver: c.homeserverHost, element: c.elementHost, ...(c.dns?.manageApex ? apex : {}) };
    return { certificates, dnsRecords };
}

/**
 * Inbound TCP ports the host firewall lets in: SSH, HTTP, HTTPS, 8448 with delegation "none",
 * ICE over TCP (matrix:rtc), TURN and TURN over TLS (matrix:turn), extras.
 */
export function firewallPorts(c: StackConfig): number[] {
    const ports = [
        c.machine.sshPort,
        80,
        443,
        ...(c.delegation === "none" ? [8448] : []),
        ...(c.rtc ? [c.rtc.tcpPort] : []),
        ...(c.turn ? [c.turn.port, c.turn.tlsPort] : []),
        ...c.firewall.allowTcpPorts,
    ];
    return [...new Set(ports)].sort((a, b) => a - b);
}

/** A UDP port, or a range as [first, last]. */
export type UdpPorts = (number | [number, number])[];

/** Inbound UDP the host firewall lets in: ICE (and LiveKit's TURN), coturn and its relay range. */
export function firewallUdpPorts(c: StackConfig): UdpPorts {
    return [
        ...(c.rtc ? [c.rtc.udpPort, ...(c.rtc.turnUdpPort !== undefined ? [c.rtc.turnUdpPort] : [])] : []),
        ...(c.turn ? [c.turn.port, [c.turn.relayPorts.min, c.turn.relayPorts.max] as [number, number]] : []),
    ];
}
