// One-off account registration through Synapse's shared-secret admin API, which nginx does not
// expose: an SSH tunnel to 127.0.0.1:8008 on the host, then nonce + HMAC-SHA1 (Synapse's
// /_synapse/admin/v1/register); with matrix:auth, through MAS's admin API on the host instead.
// Used by `npm run register-user` and by the e2e and auth suites.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:net";
import { renderMasUserScript } from "../render/mas";
import { SYNAPSE_LISTEN } from "../render/synapse";
import { sshAddress, sshArgs, sshExec } from "./ssh";

export interface SshTarget {
    ipv4: string;
    /** Where SSH connects when it is not `ipv4` (matrix:machine.sshHost). */
    sshHost?: string;
    sshPort: number;
    sshUser: string;
    /** Pinned host key ("ssh-ed25519 AAAA..."); without it the first key seen is accepted. */
    sshHostKey?: string;
    privateKey: string;
}

export interface Registration {
    name: string;
    password: string;
    admin: boolean;
}

/** The MAC Synapse expects: HMAC-SHA1(secret) over nonce, user, password, admin, NUL-separated. */
export function registrationMac(secret: string, nonce: string, r: Registration): string {
    return createHmac("sha1", secret)
        .update([nonce, r.name, r.password, r.admin ? "admin" : "notadmin"].join("\0"))
        .digest("hex");
}

function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = createServer();
        server.listen(0, "127.0.0.1", () => {
            const address = server.address();
            server.close(() =>
                typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
            );
        });
    });
}

/** Run `fn` with a local URL that reaches Synapse's loopback listener on the host. */
export async function withTunnel<T>(target: SshTarget, fn: (baseUrl: string) => Promise<T>): Promise<T> {
    const port = await freePort();
    const ssh$ = sshArgs(
        {
            host: sshAddress(target),
            port: target.sshPort,
            user: target.sshUser,
            privateKey: target.privateKey,
            hostKey: target.sshHostKey,
        },
        "ExitOnForwardFailure=yes",
    );
    const ssh = spawn("ssh", [
        "-N",
        "-L",
        `127.0.0.1:${port}:${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}`,
        ...ssh$.args,
    ]);
    let stderr = "";
    ssh.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    try {
        const deadline = Date.now() + 20_000;
        for (;;) {
            try {
                await fetch(`${base}/health`);
                break;
            } catch (err) {
                if (ssh.exitCode !== null || Date.now() > deadline) {
                    throw new Error(`no SSH tunnel to ${sshAddress(target)}: ${stderr.trim() || String(err)}`);
                }
                await new Promise((r) => setTimeout(r, 100));
            }
        }
        return await fn(base);
    } finally {
        ssh.kill();
        ssh$.cleanup();
    }
}

/** Register one account; returns its user ID. Throws with Synapse's error (e.g. M_USER_IN_USE). */
export async function registerUser(target: SshTarget, sharedSecret: string, r: Registration): Promise<string> {
    return withTunnel(target, async (base) => {
        const url = `${base}/_synapse/admin/v1/register`;
        const { nonce } = (await (await fetch(url)).json()) as { nonce: string };
        const res = await fetch(url, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({
                nonce,
                username: r.name,
                password: r.password,
                admin: r.admin,
                mac: registrationMac(sharedSecret, nonce, r),
            }),
        });
        const body = (await res.json()) as { user_id?: string; errcode?: string; error?: string };
        if (!res.ok || !body.user_id)
            throw new Error(`registration refused: ${body.errcode ?? res.status} ${body.error ?? ""}`);
        return body.user_id;
    });
}

/**
 * With matrix:auth, MAS holds the accounts: the same registration through its admin API on the
 * host (render/mas.ts), over one SSH command, the password on stdin. Returns the user ID.
 */
export async function registerUserInMas(target: SshTarget, serverName: string, r: Registration): Promise<string> {
    const res = await sshExec(
        {
            host: sshAddress(target),
            port: target.sshPort,
            user: target.sshUser,
            privateKey: target.privateKey,
            hostKey: target.sshHostKey,
        },
        renderMasUserScript({ name: r.name, admin: r.admin }, { user: target.sshUser, existsOk: false }),
        r.password,
    );
    if (res.code !== 0) throw new Error(`registration refused: ${res.stderr.trim().split("\n").at(-1) ?? res.code}`);
    return `@${r.name}:${serverName}`;
}
