// SSH to the server as the stack's connection describes it: a private key and, when pinned, the
// host key, each in a temporary file; shared by the register-user tunnel, ManagedFile's provider
// and the e2e engine.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

/** Where SSH reaches a machine: its `sshHost` when set, else its `ipv4` (config/machine.ts). */
export const sshAddress = <T>(m: { ipv4: T; sshHost?: string }): T | string => m.sshHost ?? m.ipv4;

/** What an SSH connection uses when the stack does not say (matrix:machine's defaults too). */
export const SSH_DEFAULTS = { port: 22, user: "root" } as const;

export interface SshConnection {
    host: string;
    port?: number;
    user?: string;
    privateKey?: string;
    /** Pinned host key ("ssh-ed25519 AAAA..."); without it the first key seen is accepted. */
    hostKey?: string;
}

/** The known_hosts line for `c`: its pinned host key, or none (ssh then takes the first key it sees). */
function knownHostsLine(c: SshConnection): string {
    // OpenSSH looks a host on another port than 22 up as "[host]:port".
    const port = c.port ?? SSH_DEFAULTS.port;
    return c.hostKey ? `${port === 22 ? c.host : `[${c.host}]:${port}`} ${c.hostKey}\n` : "";
}

/**
 * ssh arguments up to and including user@host; `cleanup` removes the key files. A
 * `UserKnownHostsFile=` among `options` (a shared connection's, sshMux) replaces the temporary one.
 */
export function sshArgs(c: SshConnection, ...options: string[]): { args: string[]; cleanup(): void } {
    const dir = mkdtempSync(path.join(tmpdir(), "matrix-ssh-"));
    const key = path.join(dir, "key");
    const pem = c.privateKey ?? "";
    // OpenSSH refuses a key file without its final newline.
    writeFileSync(key, pem.endsWith("\n") ? pem : `${pem}\n`, { mode: 0o600 });
    const own = !options.some((o) => o.startsWith("UserKnownHostsFile="));
    const knownHosts = path.join(dir, "known_hosts");
    if (own) writeFileSync(knownHosts, knownHostsLine(c));
    const o = [
        "BatchMode=yes",
        ...(own ? [`UserKnownHostsFile=${knownHosts}`] : []),
        `StrictHostKeyChecking=${c.hostKey ? "yes" : "accept-new"}`,
        ...options,
    ];
    return {
        args: [
            "-i",
            key,
            "-p",
            String(c.port ?? SSH_DEFAULTS.port),
            ...o.flatMap((x) => ["-o", x]),
            `${c.user ?? SSH_DEFAULTS.user}@${c.host}`,
        ],
        cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
}

/** One command over SSH (one exec request, `stdin` piped), as the command provider runs it. */
export async function sshExec(
    c: SshConnection,
    command: string,
    stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
    const mux = sshMux(c);
    const release = mux ? await mux.acquire() : () => undefined;
    let ssh: ReturnType<typeof sshArgs>;
    let child: ChildProcessWithoutNullStreams;
    try {
        ssh = sshArgs(c, "ConnectTimeout=15", "ServerAliveInterval=15", ...(mux?.options ?? []));
        try {
            child = spawn("ssh", ["-q", ...ssh.args, "--", command], { stdio: ["pipe", "pipe", "pipe"] });
        } catch (err) {
            ssh.cleanup();
            throw err;
        }
    } catch (err) {
        release(false);
        throw err;
    }
    return new Promise((resolve, reject) => {
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        // ssh gone before it read all of stdin: its exit status says why.
        child.stdin.on("error", () => undefined);
        child.on("error", (err) => {
            ssh.cleanup();
            release(false);
            reject(err);
        });
        child.on("close", (code) => {
            ssh.cleanup();
            release(code !== null && code !== 255);
            resolve({ code: code ?? 255, stdout, stderr });
        });
        child.stdin.end(stdin);
    });
}

/** Sessions at once on one shared connection: below sshd's default MaxSessions (10). */
export const MUX_SESSIONS = 8;

/** A process's shared SSH connections (OpenSSH's ControlMaster), kept on `globalThis`. */
interface MuxState {
    dir: string;
    masters: Map<string, { active: number; failed: boolean; queue: (() => void)[] }>;
}

/**
 * The shared connection `sshExec` uses for `c`, as Ansible does: the first command connects and
 * leaves the connection open (OpenSSH's ControlMaster, ControlPersist 30 s idle), later ones
 * open a session on it, without a new handshake, login and PAM session each. One per process
 * and connection (host, port, user, key, pinned host key); its socket in a folder of this user's
 * alone (0700). A host whose sshd refuses a session gets a connection of its own, as before.
 * Undefined (no sharing) when that folder cannot be made safe or MATRIX_SSH_MUX is "0".
 */
export function sshMux(
    c: SshConnection,
): { options: string[]; acquire(): Promise<(connected?: boolean) => void> } | undefined {
    if (process.env.MATRIX_SSH_MUX === "0") return undefined;
    const g = globalThis as { matrixSshMux?: MuxState | null };
    if (g.matrixSshMux === undefined) g.matrixSshMux = muxState();
    const state = g.matrixSshMux;
    if (!state) return undefined;
    const id = createHash("sha256")
        .update(
            JSON.stringify([
                c.host,
                c.port ?? SSH_DEFAULTS.port,
                c.user ?? SSH_DEFAULTS.user,
                c.privateKey ?? "",
                c.hostKey ?? "",
            ]),
        )
        .digest("hex")
        .slice(0, 16);
    const socket = path.join(state.dir, `${process.pid}-${id}`);
    const knownHosts = `${socket}.known_hosts`;
    let m = state.masters.get(socket);
    if (!m) {
        // The connection checks the host key again at each rekey: its file lives as long as it does.
        writeFileSync(knownHosts, knownHostsLine(c), { mode: 0o600 });
        state.masters.set(socket, (m = { active: 0, failed: false, queue: [] }));
    }
    const master = m;
    // The connection is up while its socket is there. Until then commands go one at a time (each
    // would open a connection of its own); after one failed to connect, all at once, as without
    // sharing (a host that does not answer fails them together, not one after another).
    const room = () => master.failed || master.active < (existsSync(socket) ? MUX_SESSIONS : 1);
    return {
        options: [
            "ControlMaster=auto",
            `ControlPath=${socket}`,
            "ControlPersist=30",
            `UserKnownHostsFile=${knownHosts}`,
        ],
        async acquire() {
            // Woken when a command ends, and every 50 ms: the socket appears once the first has logged in.
            while (!room())
                await new Promise<void>((resolve) => {
                    master.queue.push(resolve);
                    setTimeout(resolve, 50);
                });
            master.active++;
            let released = false;
            return (connected = true) => {
                if (released) return;
                released = true;
                master.active--;
                master.failed = !connected && !existsSync(socket);
                for (const next of master.queue.splice(0)) next();
            };
        },
    };
}

/** The folder for the sockets, or null when it is not this user's alone; closes them on exit. */
function muxState(): MuxState | null {
    const uid = process.getuid?.();
    if (uid === undefined) return null;
    // A socket's path has room for about 100 bytes (104 on macOS, whose $TMPDIR is long); ssh
    // adds 17 while it sets one up, and the name is up to 24.
    const dir = [tmpdir(), "/tmp"].map((t) => path.join(t, `matrix-pulumi-ssh-${uid}`)).find((d) => d.length <= 60);
    if (!dir) return null;
    try {
        mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") return null;
    }
    // Another user's folder, a link, or one others can write in would hand them the connection.
    const st = lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) return null;
    // Pulumi stops its providers with a signal, before the exit below: the host-key files of
    // processes gone (their connections close by themselves, 30 s idle, and remove their sockets).
    for (const name of readdirSync(dir)) {
        const pid = Number(/^([0-9]+)-[0-9a-f]+\.known_hosts$/.exec(name)?.[1] ?? 0);
        if (pid && !alive(pid)) rmSync(path.join(dir, name), { force: true });
    }
    const state: MuxState = { dir, masters: new Map() };
    process.once("exit", () => {
        for (const socket of state.masters.keys()) {
            if (existsSync(socket))
                spawnSync("ssh", ["-q", "-o", `ControlPath=${socket}`, "-O", "exit", "mux"], { timeout: 5000 });
            rmSync(`${socket}.known_hosts`, { force: true });
        }
    });
    return state;
}

/** Whether process `pid` runs (one of another user's too). */
function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return true;
    } catch (err) {
        return (err as NodeJS.ErrnoException).code === "EPERM";
    }
}
