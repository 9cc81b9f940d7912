// The host firewall: one nftables table of its own (inet matrix_pulumi) that drops every inbound
// connection but SSH, HTTP, HTTPS (and the ports a stack adds), loaded by a systemd unit.
import { aptInstall, ensureDir, script, sha256, shq, writeFile } from "./shell";

export const FIREWALL_TABLE = "matrix_pulumi";
export const FIREWALL_PATHS = {
    rules: "/etc/matrix-pulumi/firewall.nft",
    unit: "/etc/systemd/system/matrix-pulumi-firewall.service",
} as const;
export const FIREWALL_SERVICE = "matrix-pulumi-firewall";
export const FIREWALL_APT_PACKAGES = ["nftables"];
export const FIREWALL_FILE_MODE = { mode: "0644", owner: "root", group: "root" } as const;

/** A TCP port let in from one address only. */
export interface SourcedPort {
    port: number;
    from: string;
}

/**
 * The ruleset. Loading it replaces the table atomically (declare, delete, define in one
 * transaction), so a reload never leaves the host open or half-filtered. Established
 * connections stay up: the SSH session that loads it is not cut.
 */
export function renderFirewallRules(s: {
    tcpPorts: number[];
    /** UDP ports and ranges ([first, last]) let in from anywhere (calls). Default: none. */
    udpPorts?: (number | [number, number])[];
    sourced?: SourcedPort[];
}): string {
    const ports = [...new Set(s.tcpPorts)].sort((a, b) => a - b);
    for (const p of [...ports, ...(s.sourced ?? []).map((x) => x.port)]) {
        if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`not a TCP port: ${p}`);
    }
    const udp = (s.udpPorts ?? []).map((p) => (Array.isArray(p) ? p : ([p, p] as [number, number])));
    for (const [first, last] of udp) {
        for (const p of [first, last]) {
            if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`not a UDP port: ${p}`);
        }
        if (first > last) throw new Error(`not a UDP port range: ${first}-${last}`);
    }
    const udpList = udp
        .sort((a, b) => a[0] - b[0])
        .map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`));
    for (const { from } of s.sourced ?? []) {
        if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(from)) throw new Error(`not an IPv4 address: ${from}`);
    }
    return [
        "# Managed by matrix-pulumi: inbound connections other than these ports are dropped.",
        `table inet ${FIREWALL_TABLE}`,
        `delete table inet ${FIREWALL_TABLE}`,
        `table inet ${FIREWALL_TABLE} {`,
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        '\t\tiifname "lo" accept',
        // ICMP (1) and ICMPv6 (58; neighbour discovery: without it IPv6 stops working), by
        // number: names need /etc/protocols, which a minimal host lacks (no netbase).
        "\t\tmeta l4proto { 1, 58 } accept",
        `\t\ttcp dport { ${ports.join(", ")} } accept`,
        // Calls: ICE, TURN and the relay range (none unless matrix:rtc or matrix:turn).
        ...(udpList.length > 0 ? [`\t\tudp dport { ${udpList.join(", ")} } accept`] : []),
        // Ports open to one address only (PostgreSQL for the Synapse host).
        ...(s.sourced ?? []).map((x) => `\t\tip saddr ${x.from} tcp dport ${x.port} accept`),
        "\t}",
        "}",
        "",
    ].join("\n");
}

export function renderFirewallUnit(): string {
    return [
        "# Managed by matrix-pulumi.",
        "[Unit]",
        `Description=matrix-pulumi host firewall (nftables table inet ${FIREWALL_TABLE})`,
        // After Debian's nftables.service, whose default ruleset starts with `flush ruleset`.
        "After=nftables.service",
        "Before=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        `ExecStart=/usr/sbin/nft -f ${FIREWALL_PATHS.rules}`,
        `ExecReload=/usr/sbin/nft -f ${FIREWALL_PATHS.rules}`,
        `ExecStop=/usr/sbin/nft delete table inet ${FIREWALL_TABLE}`,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ].join("\n");
}

/** nftables and the unit; the rules file comes as a ManagedFile. */
export function renderFirewallInstallScript(opts: { user?: string } = {}): string {
    const root = { owner: "root", group: "root" };
    return script(
        [
            ...aptInstall(FIREWALL_APT_PACKAGES),
            ...ensureDir("/etc/matrix-pulumi", { mode: "0755", ...root }),
            ...writeFile(FIREWALL_PATHS.unit, renderFirewallUnit(), { mode: "0644", ...root }),
            "systemctl daemon-reload",
        ],
        opts,
    );
}

/** Check the rules, then load them (atomically) and enable the unit for boot. */
export function renderFirewallApplyScript(s: { revision: string }, opts: { user?: string } = {}): string {
    return script(
        [
            `# revision ${sha256(s.revision)}`,
            `nft -c -f ${shq(FIREWALL_PATHS.rules)}`,
            `systemctl enable ${FIREWALL_SERVICE} >/dev/null 2>&1`,
            `if systemctl is-active --quiet ${FIREWALL_SERVICE}; then systemctl reload ${FIREWALL_SERVICE}; else systemctl start ${FIREWALL_SERVICE}; fi`,
            `echo "firewall: $(nft list chain inet ${FIREWALL_TABLE} input | grep -c accept) accept rules"`,
        ],
        opts,
    );
}

/**
 * On destroy (or before a replacement's create, which brings it back): the unit file goes. The
 * table stays loaded until the apply step's delete unloads it.
 */
export function renderFirewallInstallDeleteScript(opts: { user?: string } = {}): string {
    return script([`rm -f ${shq(FIREWALL_PATHS.unit)}`, "systemctl daemon-reload"], opts);
}

/** On destroy: the table is unloaded and the unit disabled (the host is as open as before). */
export function renderFirewallDeleteScript(opts: { user?: string } = {}): string {
    return script(
        [
            `systemctl disable --now ${FIREWALL_SERVICE} 2>/dev/null || true`,
            `nft delete table inet ${FIREWALL_TABLE} 2>/dev/null || true`,
        ],
        opts,
    );
}
