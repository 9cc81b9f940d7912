// What the program derives from a validated config: public names, firewall ports, the
// preflight's settings, and the stack keys a host's SSH connection is read from again.
import type { PreflightSettings } from "../lib/preflight";
import { DEFAULT_JWT_SERVICE_URL, DEFAULT_LIVEKIT_URL } from "./defaults";
import type { StackConfig } from "./schema";

/** The stack config keys the server's SSH connection is built from (read again by managed files). */
export const HOST_CONFIG_KEYS = { machine: "matrix:machine", privateKey: "matrix:sshPrivateKey" } as const;
/** The same for the database host (matrix:database.machine), with the same key. */
export const DATABASE_HOST_CONFIG_KEYS = {
    machine: "matrix:database",
    field: "machine",
    privateKey: "matrix:sshPrivateKey",
} as const;

/** What the preflight checks on each host of the stack (lib/preflight.ts); `dryRun` is the caller's. */
export function preflightSettings(c: StackConfig, role: "homeserver" | "database"): PreflightSettings {
    const postgres = { database: c.postgres.database };
    if (role === "database") return { key: "matrix:database.machine", firewall: c.firewall.enabled, postgres };
    const names = publicHostnames(c).certificates;
    return {
        key: "matrix:machine",
        web: { names: [names.homeserver, names.element, ...(names.apex ? [names.apex] : [])] },
        amd64Downloads: amd64Downloads(c),
        firewall: c.firewall.enabled,
        postgres: c.database ? undefined : postgres,
        backupSchedule: c.backup.schedule,
        auth: { on: c.auth?.enabled === true, allowDisable: c.auth?.allowDisable ?? false },
    };
}

/** The calls' release files left at their default (`linux_amd64`) download, by config key. */
function amd64Downloads(c: StackConfig): string[] {
    if (!c.rtc) return [];
    return [
        ...(c.rtc.livekit.url === DEFAULT_LIVEKIT_URL(c.rtc.livekit.version) ? ["matrix:rtc.livekit"] : []),
        ...(c.rtc.jwtService.url === DEFAULT_JWT_SERVICE_URL(c.rtc.jwtService.version)
            ? ["matrix:rtc.jwtService"]
            : []),
    ];
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
