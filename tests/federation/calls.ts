// What Element Call does, from outside the host: an OpenID token from the user's homeserver,
// posted to lk-jwt-service for a LiveKit JWT; then two @livekit/rtc-node participants in a child
// process (rtcCall.ts) whose /etc/hosts names the test hosts (a private mount namespace) and whose
// CA bundle adds the test CA. Also: nftables rules on the test machine that drop one transport.
import { spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { get, type MatrixClient } from "../e2e/session";
import type { CallResult } from "./rtcCall";

const ROOT = path.resolve(__dirname, "../..");

/** What lk-jwt-service's /get_token takes (MSC4195): the OpenID token, the room, the member. */
export async function openIdToken(mx: MatrixClient): Promise<Record<string, unknown>> {
    const res = await get(
        `${mx.getHomeserverUrl()}/_matrix/client/v3/user/${encodeURIComponent(mx.getUserId()!)}/openid/request_token`,
        {
            method: "POST",
            headers: { Authorization: `Bearer ${mx.getAccessToken()}`, "Content-Type": "application/json" },
            body: "{}",
        },
    );
    if (res.status !== 200) throw new Error(`openid/request_token: ${res.status} ${await res.text()}`);
    return (await res.json()) as Record<string, unknown>;
}

/**
 * POST /get_token as Element Call does; `claimedUserId` defaults to the client's own, `member` (the
 * call membership's id, part of the LiveKit identity) to one per device.
 */
export async function liveKitToken(
    serviceUrl: string,
    mx: MatrixClient,
    roomId: string,
    claimedUserId = mx.getUserId()!,
    member = `member-${mx.getDeviceId()}`,
): Promise<{ status: number; body: { url?: string; jwt?: string; errcode?: string } }> {
    const res = await get(`${serviceUrl}/get_token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
            room_id: roomId,
            slot_id: "m.call#ROOM",
            openid_token: await openIdToken(mx),
            member: {
                id: member,
                claimed_user_id: claimedUserId,
                claimed_device_id: mx.getDeviceId(),
            },
        }),
    });
    return { status: res.status, body: (await res.json()) as { url?: string; jwt?: string; errcode?: string } };
}

/** The claims of a JWT (not verified: the SFU does that when the token is used). */
export function jwtClaims(jwt: string): Record<string, unknown> {
    return JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
}

/**
 * A call between two participants (A publishes, B listens) through the SFU at `url`, from this
 * machine: names resolved by `hosts`, TLS trusted through the system CAs plus `caPem`.
 */
export async function callThroughSfu(o: {
    url: string;
    jwtA: string;
    jwtB: string;
    hosts: Record<string, string>;
    caPem: string;
    run: string;
    frames?: number;
    timeoutMs?: number;
}): Promise<CallResult> {
    const hostsFile = path.join(o.run, "rtc-hosts");
    writeFileSync(
        hostsFile,
        ["127.0.0.1 localhost", ...Object.entries(o.hosts).map(([name, ip]) => `${ip} ${name}`), ""].join("\n"),
    );
    const bundle = path.join(o.run, "rtc-ca.pem");
    writeFileSync(bundle, readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8") + "\n" + o.caPem);
    const spec = { url: o.url, jwtA: o.jwtA, jwtB: o.jwtB, frames: o.frames ?? 50, timeoutMs: o.timeoutMs ?? 30_000 };
    const child = spawn(
        "unshare",
        [
            "--mount",
            "--",
            "bash",
            "-c",
            'mount --bind "$1" /etc/hosts && exec "$2" --import tsx "$3" "$4"',
            "call",
            hostsFile,
            process.execPath,
            path.join(__dirname, "rtcCall.ts"),
            JSON.stringify(spec),
        ],
        // NODE_ENV=production: rtc-node's logger prints debug lines otherwise.
        {
            cwd: ROOT,
            env: { ...process.env, NODE_ENV: "production", SSL_CERT_FILE: bundle },
            stdio: ["ignore", "pipe", "pipe"],
        },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    const result = /^RESULT (.*)$/m.exec(out);
    if (code !== 0 || !result) throw new Error(`the call failed (exit ${code}):\n${out.slice(-3000)}`);
    return JSON.parse(result[1]!) as CallResult;
}

/**
 * Drop this machine's packets to `address` on the given ports (an nftables table of the test's
 * own), as a network that blocks a transport would; returns what removes the rule and how many
 * packets it dropped.
 */
export function dropTraffic(address: string, proto: "udp" | "tcp", ports: number[]): () => number {
    const table = `matrix_pulumi_test_${proto}`;
    const rules = [
        `table inet ${table} {`,
        "  chain out {",
        "    type filter hook output priority 0;",
        `    ip daddr ${address} ${proto} dport { ${ports.join(", ")} } counter drop`,
        "  }",
        "}",
        "",
    ].join("\n");
    const load = spawnSync("nft", ["-f", "-"], { input: rules, encoding: "utf8" });
    if (load.status !== 0) throw new Error(`nft: ${load.stderr}`);
    return () => {
        const list = spawnSync("nft", ["list", "table", "inet", table], { encoding: "utf8" }).stdout;
        spawnSync("nft", ["delete", "table", "inet", table]);
        return Number(/counter packets (\d+)/.exec(list)?.[1] ?? 0);
    };
}

/** TURN credentials as Synapse hands them to a client (GET /voip/turnServer). */
export interface TurnCredentials {
    username: string;
    password: string;
    uris: string[];
    ttl: number;
}

export async function turnCredentials(mx: MatrixClient): Promise<TurnCredentials> {
    const res = await get(`${mx.getHomeserverUrl()}/_matrix/client/v3/voip/turnServer`, {
        headers: { Authorization: `Bearer ${mx.getAccessToken()}` },
    });
    if (res.status !== 200) throw new Error(`voip/turnServer: ${res.status} ${await res.text()}`);
    return (await res.json()) as TurnCredentials;
}

/** The password a TURN REST credential has under `secret` (coturn's use-auth-secret). */
export function turnPassword(secret: string, username: string): string {
    return createHmac("sha1", secret).update(username).digest("base64");
}

/**
 * A TURN allocation (Allocate, Refresh, ChannelBind to a public peer, no data) with Debian's
 * turnutils_uclient: exit 0 when it succeeds, 255 when the server refuses the credentials.
 */
export function turnAllocate(server: string, c: { username: string; password: string }, tcp: boolean) {
    const args = ["20", "turnutils_uclient", ...(tcp ? ["-t"] : []), "-u", c.username, "-w", c.password];
    const r = spawnSync("timeout", [...args, "-c", "-n", "0", "-e", "1.2.3.4", server], { encoding: "utf8" });
    return { code: r.status, output: `${r.stdout}${r.stderr}` };
}
