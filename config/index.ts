// The stack configuration: one schema (a file per section), validated before any resource is
// registered. Pure apart from load.ts, which reads Pulumi's runtime.
export { ConfigError, parseHomeserverConfig, parseStackConfig, type ParseOptions } from "./parse";
export { loadProvidedSecret, loadSmtpPassword, loadSshPrivateKey, loadStackConfig } from "./load";
export { stackSchema, type Delegation, type MachineConfig, type StackConfig } from "./schema";
export {
    DATABASE_HOST_CONFIG_KEYS,
    firewallPorts,
    firewallUdpPorts,
    HOST_CONFIG_KEYS,
    preflightSettings,
    publicHostnames,
    type UdpPorts,
} from "./derived";
export {
    DEFAULT_JWT_SERVICE_URL,
    DEFAULT_LIVEKIT_URL,
    DEFAULT_SYNAPSE_VERSION,
    DEFAULTS,
    LETSENCRYPT_PRODUCTION,
    LETSENCRYPT_STAGING,
} from "./defaults";
export { unusableIpv4, unusableIpv6 } from "./fields";
export { MANAGED_SYNAPSE_KEYS } from "./rules";
export { PROVIDED_SECRETS, type ProvidedSecret } from "./secrets";
export { USER_NAME } from "./users";
