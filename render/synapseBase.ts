// Where Synapse lives on a host and the sandbox its processes run in: shared by the main process
// (render/synapse.ts) and its workers (render/workers.ts).
import { sha256, shq } from "./shell";
export const SYNAPSE_PATHS = {
    venv: "/opt/synapse",
    configDir: "/etc/matrix-synapse",
    homeserverConfig: "/etc/matrix-synapse/homeserver.yaml",
    secretsConfig: "/etc/matrix-synapse/secrets.yaml",
    logConfig: "/etc/matrix-synapse/log.yaml",
    dataDir: "/var/lib/matrix-synapse",
    signingKey: "/var/lib/matrix-synapse/signing.key",
    mediaStore: "/var/lib/matrix-synapse/media_store",
    unit: "/etc/systemd/system/matrix-synapse.service",
    /** The CAs federation trusts, when the stack names them (matrix:federation.caBundle). */
    federationCa: "/etc/matrix-synapse/federation-ca.pem",
    /** The database host's CA, when PostgreSQL is on a host of its own (matrix:database). */
    databaseCa: "/etc/matrix-synapse/database-ca.pem",
    backups: "/var/backups/matrix-synapse",
    /** The revision the running Synapse was (re)started with: a re-run with the same one restarts nothing. */
    revisionStamp: "/var/lib/matrix-pulumi/synapse.revision",
} as const;
export const SYNAPSE_USER = "matrix-synapse";
export const SYNAPSE_SERVICE = "matrix-synapse";
export const SYNAPSE_LISTEN = { address: "127.0.0.1", port: 8008 } as const;

/** How systemd runs a Synapse process (main or worker): it says when it is ready. */
export function synapseServiceLines(execStart: string): string[] {
    return [
        "Type=notify",
        "NotifyAccess=main",
        `User=${SYNAPSE_USER}`,
        `Group=${SYNAPSE_USER}`,
        `WorkingDirectory=${SYNAPSE_PATHS.dataDir}`,
        `ExecStart=${execStart}`,
    ];
}

/** The sandbox every Synapse process (main, workers, their Redis) runs in. */
export function synapseUnitHardening(): string[] {
    return [
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "PrivateDevices=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectControlGroups=true",
        "RestrictSUIDSGID=true",
        "LockPersonality=true",
        // Synapse needs no capability, no namespaces, no realtime, and only these sockets.
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "ProtectClock=true",
        "ProtectHostname=true",
        "ProtectKernelLogs=true",
        "ProtectProc=invisible",
        "RemoveIPC=true",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        // A refused call fails (EPERM) rather than killing Synapse.
        "SystemCallErrorNumber=EPERM",
        "UMask=0027",
    ];
}

/** A hash over the files and version a Synapse process reads (used as its restart revision). */
export function synapseRevision(parts: string[]): string {
    return sha256(parts.join("\0"));
}

/**
 * Wait (as a script's lines) until the shell test `condition` succeeds, up to `seconds`; past
 * that, run `onTimeout` and exit 1.
 */
export function untilTrue(condition: string, seconds: number, onTimeout: string[]): string[] {
    return [
        `deadline=$(( $(date +%s) + ${seconds} ))`,
        `until ${condition}; do`,
        `  if [ "$(date +%s)" -ge "$deadline" ]; then`,
        ...onTimeout.map((l) => `    ${l}`),
        "    exit 1",
        "  fi",
        "  sleep 0.5",
        "done",
    ];
}

/** untilTrue for `url` answering: every Synapse process's start waits this way. */
export function untilHealthy(url: string, seconds: number, onTimeout: string[]): string[] {
    return untilTrue(`curl -fsS --max-time 5 ${shq(url)} >/dev/null 2>&1`, seconds, onTimeout);
}
