// coturn for legacy 1:1 calls (matrix:turn): Debian's package run from a drop-in of ours with a
// config of ours (no conffile edited), use-auth-secret shared with Synapse, the homeserver host's
// certificate for TURN over TLS, and the hardening Synapse's TURN guide lists.
import { certificatePaths } from "./nginx";
import { aptInstall, ensureDir, restartOnRevision, script, sha256, shq, writeFile } from "./shell";
import { untilTrue } from "./synapseBase";

export const TURN_APT_PACKAGES = ["coturn"];
export const TURN_SERVICE = "coturn";
/** Debian's coturn runs as this user. */
export const TURN_USER = "turnserver";
export const TURN_PATHS = {
    dir: "/etc/matrix-pulumi/turn",
    config: "/etc/matrix-pulumi/turn/turnserver.conf",
    /** The homeserver certificate and key, copied for coturn's user (certbot's key is root's). */
    certificate: "/etc/matrix-pulumi/turn/fullchain.pem",
    key: "/etc/matrix-pulumi/turn/privkey.pem",
    dropIn: "/etc/systemd/system/coturn.service.d/matrix-pulumi.conf",
    /** Run by certbot after each renewal: the new certificate copied, coturn restarted. */
    deployHook: "/etc/letsencrypt/renewal-hooks/deploy/matrix-pulumi-coturn",
    stamp: "/etc/matrix-pulumi/turn/.revision",
    certificateStamp: "/etc/matrix-pulumi/turn/.certificate",
} as const;

export const TURN_FILE_MODES = {
    config: { mode: "0640", owner: "root", group: TURN_USER },
    dropIn: { mode: "0644", owner: "root", group: "root" },
} as const;

/** Peers a relay may never reach (Synapse's TURN guide): private, loopback, link-local, reserved. */
export const DENIED_PEER_RANGES = [
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "127.0.0.0-127.255.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.0.0.0-192.0.0.255",
    "192.0.2.0-192.0.2.255",
    "192.88.99.0-192.88.99.255",
    "192.168.0.0-192.168.255.255",
    "198.18.0.0-198.19.255.255",
    "198.51.100.0-198.51.100.255",
    "203.0.113.0-203.0.113.255",
    "240.0.0.0-255.255.255.255",
    "::1",
    "64:ff9b::-64:ff9b::ffff:ffff",
    "::ffff:0.0.0.0-::ffff:255.255.255.255",
    "100::-100::ffff:ffff:ffff:ffff",
    "2001::-2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
    "2002::-2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

export interface TurnSettings {
    /** The homeserver host: the realm, and the name on the TLS certificate. */
    realm: string;
    /** The machine's public IPv4 (relayed candidates carry it). */
    externalIp: string;
    port: number;
    tlsPort: number;
    relayPorts: { min: number; max: number };
    sharedSecret: string;
}

/** turnserver.conf (secret: it holds the shared secret). */
export function renderTurnConfig(s: TurnSettings): string {
    return [
        "# Managed by matrix-pulumi. Secret: readable by root and turnserver only.",
        `listening-port=${s.port}`,
        `tls-listening-port=${s.tlsPort}`,
        // The address clients are told (the machine's public one). No listening-ip or relay-ip:
        // behind 1:1 NAT (most clouds) that address is on no interface; coturn relays from the
        // address each client reached, and the firewall decides what is reachable.
        `external-ip=${s.externalIp}`,
        `min-port=${s.relayPorts.min}`,
        `max-port=${s.relayPorts.max}`,
        `realm=${s.realm}`,
        "use-auth-secret",
        `static-auth-secret=${s.sharedSecret}`,
        "fingerprint",
        `cert=${TURN_PATHS.certificate}`,
        `pkey=${TURN_PATHS.key}`,
        "no-tlsv1",
        "no-tlsv1_1",
        "no-dtls",
        // VoIP is UDP: no relaying to arbitrary TCP endpoints.
        "no-tcp-relay",
        "no-multicast-peers",
        ...DENIED_PEER_RANGES.map((r) => `denied-peer-ip=${r}`),
        // Client → TURN → TURN → client through this one server.
        `allowed-peer-ip=${s.externalIp}`,
        // 4 streams per video call: 3 relayed calls per user at a time.
        "user-quota=12",
        "total-quota=1200",
        "no-cli",
        "no-software-attribute",
        "log-file=stdout",
        "simple-log",
        "",
    ].join("\n");
}

/** What Synapse hands clients (turn_uris): UDP first, then TCP, then TLS for the strictest networks. */
export function turnUris(s: { realm: string; port: number; tlsPort: number }): string[] {
    return [
        `turn:${s.realm}:${s.port}?transport=udp`,
        `turn:${s.realm}:${s.port}?transport=tcp`,
        `turns:${s.realm}:${s.tlsPort}?transport=tcp`,
    ];
}

/** Debian's unit, run with our config instead of /etc/turnserver.conf (which stays as shipped). */
export function renderTurnDropIn(): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Service]",
        "ExecStart=",
        `ExecStart=/usr/bin/turnserver -c ${TURN_PATHS.config} --pidfile=`,
        "",
    ].join("\n");
}

/** Copy the homeserver certificate for coturn; restart it when the copy changed (a renewal). */
function copyCertificate(host: string): string[] {
    const c = certificatePaths(host);
    return [
        `install -m 0644 -o root -g root ${shq(c.fullchain)} ${shq(TURN_PATHS.certificate)}`,
        `install -m 0640 -o root -g ${TURN_USER} ${shq(c.privkey)} ${shq(TURN_PATHS.key)}`,
    ];
}

function deployHook(host: string): string {
    return [
        "#!/bin/sh",
        "# Managed by matrix-pulumi: coturn serves the renewed homeserver certificate.",
        "set -e",
        ...copyCertificate(host),
        `systemctl try-restart ${TURN_SERVICE}`,
        "",
    ].join("\n");
}

/** The folder for our config and the certificate copy; on delete, coturn stopped and all of it gone. */
export function renderTurnDirsScript(opts: { user?: string } = {}): { create: string; delete: string } {
    return {
        create: script(
            [
                ...aptInstall(TURN_APT_PACKAGES),
                ...ensureDir(TURN_PATHS.dir, { mode: "0750", owner: "root", group: TURN_USER }),
                ...ensureDir("/etc/systemd/system/coturn.service.d", { mode: "0755", owner: "root", group: "root" }),
            ],
            opts,
        ),
        delete: script(
            [
                `systemctl disable --now ${TURN_SERVICE} 2>/dev/null || true`,
                `rm -rf ${shq(TURN_PATHS.dir)} ${shq(TURN_PATHS.deployHook)}`,
                "systemctl daemon-reload",
                `echo "coturn stopped; the package stays"`,
            ],
            opts,
        ),
    };
}

/**
 * The certificate copied and its renewal hook in place, the config checked, coturn (re)started
 * when its files changed, and waiting until it listens.
 */
export function renderTurnServiceScript(
    s: { certificateHost: string; port: number; revision: string },
    opts: { user?: string } = {},
): string {
    return script(
        [
            ...writeFile(TURN_PATHS.deployHook, deployHook(s.certificateHost), {
                mode: "0755",
                owner: "root",
                group: "root",
            }),
            ...copyCertificate(s.certificateHost),
            // A certificate coturn has not loaded yet (a new one, or a replacement) restarts it too.
            `cert=$(sha256sum ${shq(TURN_PATHS.certificate)} | cut -d' ' -f1)`,
            `if [ "$(cat ${shq(TURN_PATHS.certificateStamp)} 2>/dev/null || true)" != "$cert" ]; then rm -f ${shq(TURN_PATHS.stamp)}; fi`,
            // Masked from its package's install until now (render/packages.ts).
            `systemctl unmask ${TURN_SERVICE} >/dev/null 2>&1`,
            "systemctl daemon-reload",
            `systemctl enable ${TURN_SERVICE} >/dev/null 2>&1`,
            ...restartOnRevision(TURN_SERVICE, TURN_PATHS.stamp, sha256(s.revision), "coturn"),
            `printf '%s\n' "$cert" > ${shq(TURN_PATHS.certificateStamp)}`,
            ...untilTrue(`ss -Hltn 'sport = :${s.port}' | grep -q .`, 30, [
                `echo "coturn does not listen on ${s.port}; its last log lines:" >&2`,
                `journalctl -u ${TURN_SERVICE} -n 30 --no-pager >&2 || true`,
            ]),
        ],
        opts,
    );
}
