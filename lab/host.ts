// The lab's hosts: Debian booted from a cached rootfs under systemd-nspawn (host.sh), each on a
// /30 of its own, reached over SSH as a user reaches a server.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** Where a test host lives: its machine name (at most 12 characters) and its /30. */
export interface Net {
    machine: string;
    hostIp: string;
    guestIp: string;
    /** The host's resolver (default: the test machine's). */
    nameserver?: string;
    /** Its Debian release (host.sh E2E_RELEASE): bookworm (the default) or trixie. */
    release?: Release;
}

/** The Debian releases a test host can run, and each one's Python (a wheelhouse must match it). */
export const RELEASES_PYTHON = { bookworm: "3.11", trixie: "3.13" } as const;
export type Release = keyof typeof RELEASES_PYTHON;

/** Host `n`'s network: 10.231.n.0/30, the test machine at .1, the host at .2. */
export function netOf(n: number, machine: string): Net {
    if (machine.length > 12) throw new Error(`machine name over 12 characters: ${machine}`);
    return { machine, hostIp: `10.231.${n}.1`, guestIp: `10.231.${n}.2` };
}

export interface Host {
    net: Net;
    hostIp: string;
    guestIp: string;
    hostKey: string;
    privateKey: string;
    keyPath: string;
}

/** Runs a tool on the test machine; throws with its output when it fails. */
export function mustRun(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
    const res = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...opts.env }, input: opts.input });
    if (res.status !== 0)
        throw new Error(`${cmd} ${args.join(" ")} failed (${res.status}):\n${res.stderr}${res.stdout}`);
    return res.stdout;
}

const HOST_SH = path.join(__dirname, "host.sh");

/** `KEY=value` lines as a map (the value may contain "="). */
export function keyValues(text: string): Record<string, string> {
    return Object.fromEntries(
        text
            .trim()
            .split("\n")
            .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
}

const hostEnv = (net: Net) => ({
    E2E_MACHINE: net.machine,
    E2E_HOST_IP: net.hostIp,
    E2E_GUEST_IP: net.guestIp,
    E2E_NAMESERVER: net.nameserver ?? "",
    E2E_RELEASE: net.release ?? "bookworm",
});

/**
 * Boot a host in `runDir`. With `packages`, its rootfs has those Debian packages installed already
 * (host.sh E2E_PACKAGES), as the program's packages step would leave it.
 */
export function hostUp(runDir: string, net: Net, packages: string[] = []): Host {
    mustRun("bash", [HOST_SH, "up", runDir], { env: { ...hostEnv(net), E2E_PACKAGES: packages.join(" ") } });
    const host = hostAttach(runDir, net);
    if (!host) throw new Error(`host ${net.machine} did not come up (see ${runDir}/console.log)`);
    return host;
}

/** The host a run folder already has, booted earlier and still running (the demo's), if any. */
export function hostAttach(runDir: string, net: Net): Host | undefined {
    const pidFile = path.join(runDir, "pid");
    if (!existsSync(pidFile) || !existsSync(path.join(runDir, "host.env"))) return undefined;
    if (spawnSync("kill", ["-0", readFileSync(pidFile, "utf8").trim()]).status !== 0) return undefined;
    const env = keyValues(readFileSync(path.join(runDir, "host.env"), "utf8"));
    return {
        net,
        hostIp: env.HOST_IP!,
        guestIp: env.GUEST_IP!,
        hostKey: env.HOST_KEY!,
        privateKey: readFileSync(path.join(runDir, "key"), "utf8"),
        keyPath: path.join(runDir, "key"),
    };
}

export function hostDown(runDir: string, net: Net): void {
    closeMux(runDir);
    spawnSync("bash", [HOST_SH, "down", runDir], { stdio: "inherit", env: { ...process.env, ...hostEnv(net) } });
}

/** What of a host outlived it: its nspawn, its link, its NAT rule. */
export function hostLeftovers(net: Net): string[] {
    const subnet = `${net.hostIp.split(".").slice(0, 3).join(".")}.0/30`;
    return [
        spawnSync("ip", ["link", "show", `ve-${net.machine}`]).status === 0 ? `link ve-${net.machine}` : "",
        spawnSync("iptables", ["-t", "nat", "-S", "POSTROUTING"], { encoding: "utf8" }).stdout.includes(subnet)
            ? `NAT rule for ${subnet}`
            : "",
        spawnSync("pgrep", ["-f", `systemd-nspawn .*-M ${net.machine} `]).status === 0
            ? `systemd-nspawn ${net.machine}`
            : "",
    ].filter(Boolean);
}

/** ssh arguments that reach the host as root with the test key (checks, tunnels). */
export function sshTo(host: Host, ...options: string[]): string[] {
    const o = ["BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", ...options];
    return ["-q", "-i", host.keyPath, ...o.flatMap((x) => ["-o", x]), `root@${host.guestIp}`];
}

/**
 * One SSH connection for a host's checks, shared by every process that runs them, its socket
 * beside the key (ssh's ControlMaster, as lib/ssh.ts's sshExec does): a connection each cost
 * about 0.1 s of CPU on either side, with a login and a PAM session on the host.
 */
const muxOptions = (keyPath: string): string[] =>
    // ssh refuses a socket path longer than about 100 bytes (it adds 17 while it sets one up).
    `${keyPath}.mux`.length > 86
        ? []
        : ["ControlMaster=auto", `ControlPath=${keyPath}.mux`, "ControlPersist=60", "ServerAliveInterval=5"];

/** Closes the checks' shared connection, if open (before the host goes down or reboots). */
function closeMux(runDir: string): void {
    const key = path.join(runDir, "key");
    if (existsSync(`${key}.mux`))
        spawnSync("ssh", ["-q", ...muxOptions(key).flatMap((x) => ["-o", x]), "-O", "exit", "mux"], { timeout: 5000 });
}

/** Run a shell command on the host as root, for checks (not part of the deployment). */
export function onHost(host: Host, command: string, input?: string): { code: number; stdout: string; stderr: string } {
    const res = spawnSync("ssh", [...sshTo(host, ...muxOptions(host.keyPath)), "--", command], {
        encoding: "utf8",
        input,
    });
    return { code: res.status ?? 255, stdout: res.stdout, stderr: res.stderr };
}

/** Power the host off and boot the same rootfs again; resolves once SSH answers. */
export function hostReboot(runDir: string, net: Net): void {
    closeMux(runDir);
    mustRun("bash", [HOST_SH, "reboot", runDir], { env: hostEnv(net) });
}
