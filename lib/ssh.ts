// SSH to the server as the stack's connection describes it: a private key and, when pinned, the
// host key, each in a temporary file; shared by the register-user tunnel, ManagedFile's provider
// and the e2e engine.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
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

/** ssh arguments up to and including user@host; `cleanup` removes the key files. */
export function sshArgs(c: SshConnection, ...options: string[]): { args: string[]; cleanup(): void } {
    const dir = mkdtempSync(path.join(tmpdir(), "matrix-ssh-"));
    const key = path.join(dir, "key");
    const pem = c.privateKey ?? "";
    // OpenSSH refuses a key file without its final newline.
    writeFileSync(key, pem.endsWith("\n") ? pem : `${pem}\n`, { mode: 0o600 });
    const knownHosts = path.join(dir, "known_hosts");
    // OpenSSH looks a host on another port than 22 up as "[host]:port".
    const port = c.port ?? SSH_DEFAULTS.port;
    const known = port === 22 ? c.host : `[${c.host}]:${port}`;
    writeFileSync(knownHosts, c.hostKey ? `${known} ${c.hostKey}\n` : "");
    const o = [
        "BatchMode=yes",
        `UserKnownHostsFile=${knownHosts}`,
        `StrictHostKeyChecking=${c.hostKey ? "yes" : "accept-new"}`,
        ...options,
    ];
    return {
        args: [
            "-i",
            key,
            "-p",
            String(port),
            ...o.flatMap((x) => ["-o", x]),
            `${c.user ?? SSH_DEFAULTS.user}@${c.host}`,
        ],
        cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
}

/** One command over SSH (one exec request, `stdin` piped), as the command provider runs it. */
export function sshExec(
    c: SshConnection,
    command: string,
    stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
    const ssh = sshArgs(c, "ConnectTimeout=15", "ServerAliveInterval=15");
    return new Promise((resolve, reject) => {
        const child = spawn("ssh", ["-q", ...ssh.args, "--", command], { stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        child.on("error", (err) => {
            ssh.cleanup();
            reject(err);
        });
        child.on("close", (code) => {
            ssh.cleanup();
            resolve({ code: code ?? 255, stdout, stderr });
        });
        child.stdin.end(stdin);
    });
}
