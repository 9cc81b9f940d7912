// Every default of the stack config, stated once: the schema fills them in, the port-clash rule
// reads them for keys not yet set, and the components take what the schema filled (they have no
// defaults of their own).
import { SSH_DEFAULTS } from "../lib/ssh";

/** Synapse release this program is tested with; stacks should pin their own (docs/operations.md). */
export const DEFAULT_SYNAPSE_VERSION = "1.163.2";
export const LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory";
export const LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";

/** The calls backend's release files (docs/calls.md). */
export const DEFAULT_LIVEKIT_URL = (version: string) =>
    `https://github.com/livekit/livekit/releases/download/v${version}/livekit_${version}_linux_amd64.tar.gz`;
export const DEFAULT_JWT_SERVICE_URL = (version: string) =>
    `https://github.com/element-hq/lk-jwt-service/releases/download/v${version}/lk-jwt-service_linux_amd64`;
export const DEFAULT_MAS_URL = (version: string) =>
    `https://github.com/element-hq/matrix-authentication-service/releases/download/v${version}/mas-cli-x86_64-linux.tar.gz`;
export const DEFAULT_ELEMENT_URL = (version: string) =>
    `https://github.com/element-hq/element-web/releases/download/v${version}/element-v${version}.tar.gz`;

export const DEFAULTS = {
    machine: { sshPort: SSH_DEFAULTS.port, sshUser: SSH_DEFAULTS.user },
    dns: { manageApex: true, ttl: 1 },
    delegation: "apex",
    acme: { directoryUrl: LETSENCRYPT_PRODUCTION },
    synapse: {
        version: DEFAULT_SYNAPSE_VERSION,
        enableRegistration: false,
        maxUploadSize: "50M",
        reportStats: false,
        healthTimeoutSeconds: 300,
        workers: "none",
        mediaRetention: { local: "forever", remote: "90d" },
    },
    element: { brand: "Element", disableCustomUrls: false },
    postgres: { database: "synapse", user: "synapse" },
    backup: { schedule: "daily", retention: 7 },
    firewall: { enabled: true },
    monitoring: { enabled: false, retention: "15d", scrapeInterval: "30s" },
    rtc: { enabled: true, udpPort: 7882, tcpPort: 7881 },
    turn: { enabled: true, port: 3478, tlsPort: 5349, relayPorts: { min: 49152, max: 49251 }, userLifetime: "1h" },
    support: { role: "admin" },
    auth: { enabled: true, registrationTokenRequired: false, allowDisable: false },
    purgeOnDestroy: false,
} as const;
