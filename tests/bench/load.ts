// npm run bench:load: figures, not a test. On one test host (systemd-nspawn, pebble, the real
// Pulumi CLI), in one run: N users in rooms of five, each long-polling /sync and sending one
// message every two seconds through nginx+TLS, at rising N, first with one Synapse process
// (workers "none"), then with the "small" workers, on the same host; messages delivered per
// second, send→receive latency p50/p95, the N at which p95 passes 1 s; and what switching
// none → small → none changes (resources, longest client-API outage).
//
// The generator runs on the same 2-core machine as the host: its own CPU use is part of what
// the figures measure, and says what two cores allow, not what Synapse can do.
import { randomBytes } from "node:crypto";
import { cpus } from "node:os";
import * as path from "node:path";
import { fetch as undiciFetch } from "undici";
import { withTunnel, registrationMac } from "../../lib/registerUser";
import type { Run } from "../../lab/pulumi";
import { longestOutage } from "./outage";
import {
    CACHE,
    ctx,
    deploy,
    DOMAIN,
    explainFailure,
    get,
    HS,
    NEW_SYNAPSE,
    preview,
    publishDns,
    quantile,
    SLOTS,
    stackConfig,
    startSession,
    stopSession,
    target,
    type SettingsOverrides,
} from "../e2e/session";

const LEVELS = (process.env.LOAD_LEVELS ?? "10,20,40,80").split(",").map(Number);
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const ROOM_SIZE = 5;
const SEND_EVERY_MS = 2000;
const lines: string[] = [];
const figure = (line: string) => {
    lines.push(line);
    console.log(`» ${line}`);
};

/** Rate limits out of the way: the generator is many users sending, not one abusive client. */
const UNLIMITED = { per_second: 10000, burst_count: 10000 };
const settingsFor = (workers: string): SettingsOverrides => ({
    synapse: {
        version: NEW_SYNAPSE,
        workers,
        extraConfig: {
            rc_message: UNLIMITED,
            rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
            rc_joins: { local: UNLIMITED, remote: UNLIMITED },
            rc_room_creation: UNLIMITED,
        },
    },
});

interface User {
    name: string;
    token: string;
    room: string;
}

const base = `https://${HS}`;
async function api<T>(method: string, url: string, token?: string, body?: unknown): Promise<T> {
    const res = await get(`${base}${url}`, {
        method,
        headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
}

/** `count` users registered with the shared secret, logged in, in rooms of ROOM_SIZE. */
async function makeUsers(count: number, prefix: string, secret: string): Promise<User[]> {
    const password = randomBytes(12).toString("hex");
    const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
    await withTunnel(target(), async (local) => {
        for (const username of names) {
            const url = `${local}/_synapse/admin/v1/register`;
            const { nonce } = (await (await undiciFetch(url)).json()) as { nonce: string };
            const r = { name: username, password, admin: false };
            const res = await undiciFetch(url, {
                method: "POST",
                headers: { "Content-Type": "application/json" },
                body: JSON.stringify({
                    nonce,
                    username,
                    password,
                    admin: false,
                    mac: registrationMac(secret, nonce, r),
                }),
            });
            if (!res.ok) throw new Error(`register ${username}: ${res.status} ${await res.text()}`);
        }
    });
    const users: User[] = [];
    for (const [i, name] of names.entries()) {
        const login = await api<{ access_token: string }>("POST", "/_matrix/client/v3/login", undefined, {
            type: "m.login.password",
            identifier: { type: "m.id.user", user: name },
            password,
        });
        let room: string;
        if (i % ROOM_SIZE === 0) {
            room = (
                await api<{ room_id: string }>("POST", "/_matrix/client/v3/createRoom", login.access_token, {
                    preset: "public_chat",
                })
            ).room_id;
        } else {
            room = users[i - (i % ROOM_SIZE)]!.room;
            await api("POST", `/_matrix/client/v3/join/${encodeURIComponent(room)}`, login.access_token, {});
        }
        users.push({ name, token: login.access_token, room });
    }
    return users;
}

/** One load level: every user syncing and sending for SECONDS; latencies of every delivery. */
async function load(
    users: User[],
    level: number,
): Promise<{ sent: number; delivered: number; latencies: number[]; errors: number }> {
    const latencies: number[] = [];
    let sent = 0;
    let errors = 0;
    let running = true;
    // A filter of the level's own: Synapse keeps a sync response for two minutes and answers an
    // identical request from it, so a user's next level would start from the last one's token.
    const filter = JSON.stringify({ room: { timeline: { limit: 50 + level }, state: { lazy_load_members: true } } });
    const syncer = async (u: User) => {
        const seen = new Set<string>();
        let since = (
            await api<{ next_batch: string }>(
                "GET",
                `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(filter)}`,
                u.token,
            )
        ).next_batch;
        while (running) {
            try {
                const r = await api<{
                    next_batch: string;
                    rooms?: {
                        join?: Record<
                            string,
                            { timeline: { events: { event_id: string; content: { body?: string } }[] } }
                        >;
                    };
                }>(
                    "GET",
                    `/_matrix/client/v3/sync?timeout=5000&since=${encodeURIComponent(since)}&filter=${encodeURIComponent(filter)}`,
                    u.token,
                );
                const now = Date.now();
                since = r.next_batch;
                for (const room of Object.values(r.rooms?.join ?? {})) {
                    for (const e of room.timeline.events) {
                        const m = /^load (\d+) /.exec(e.content.body ?? "");
                        // Each event counted once per user (a limited timeline repeats recent ones).
                        if (!m || !running || seen.has(e.event_id)) continue;
                        seen.add(e.event_id);
                        latencies.push(now - Number(m[1]));
                    }
                }
            } catch {
                errors++;
            }
        }
    };
    const sender = async (u: User, offset: number) => {
        await new Promise((r) => setTimeout(r, offset));
        let txn = 0;
        while (running) {
            const t = Date.now();
            try {
                await api(
                    "PUT",
                    `/_matrix/client/v3/rooms/${encodeURIComponent(u.room)}/send/m.room.message/${u.name}-${txn++}-${t}`,
                    u.token,
                    { msgtype: "m.text", body: `load ${t} ${u.name}` },
                );
                sent++;
            } catch {
                errors++;
            }
            await new Promise((r) => setTimeout(r, Math.max(0, SEND_EVERY_MS - (Date.now() - t))));
        }
    };
    const syncs = users.map(syncer);
    await new Promise((r) => setTimeout(r, 2000));
    const sends = users.map((u, i) => sender(u, (i * SEND_EVERY_MS) / users.length));
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    running = false;
    await Promise.all(sends);
    const delivered = latencies.length;
    await Promise.all(syncs);
    return { sent, delivered, latencies, errors };
}

/** The longest stretch /_matrix/client/versions went unanswered through nginx during `during`. */
const clientOutage = <T>(during: () => Promise<T>) =>
    longestOutage(
        () => get(`${base}/_matrix/client/versions`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok),
        during,
    );

async function main(): Promise<void> {
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? "?"}`;
    await startSession(path.join(CACHE, "run-load"), SLOTS.bench, [{ name: "load", domain: DOMAIN }]);
    try {
        const first = await preview(stackConfig(settingsFor("none")));
        if (first.code !== 0) throw new Error(explainFailure(first));
        await publishDns(first);
        const cold = await deploy(stackConfig(settingsFor("none")));
        if (cold.code !== 0) throw new Error(explainFailure(cold));
        const secret = String((await ctx.stack.outputs(true)).registrationSharedSecret);
        const crossing: Record<string, string> = {};
        const results: string[] = [];
        const switchTo = async (workers: string): Promise<Run> => {
            const p = await preview(stackConfig(settingsFor(workers)));
            const [up, outage] = await clientOutage(() => deploy(stackConfig(settingsFor(workers))));
            if (up.code !== 0) throw new Error(explainFailure(up));
            const same = JSON.stringify(p.changed) === JSON.stringify(up.changed);
            // Resources on the hosts (components are only groupings), by what the up did to them.
            const steps = up.steps.filter(
                (x) => !x.type.startsWith("matrix:index:") && x.type !== "pulumi:pulumi:Stack",
            );
            const by = (op: string) => steps.filter((x) => x.op === op).map((x) => x.name);
            figure(
                `switch to ${workers}: updated ${by("update").length} (${by("update").join(", ")}), created ${by("create").length}, deleted ${by("delete").length}; preview listed the same: ${same}; longest outage of /_matrix/client/versions through nginx ${(outage / 1000).toFixed(1)} s; up took ${up.seconds.toFixed(0)} s`,
            );
            return up;
        };
        let users: User[] = [];
        for (const mode of ["none", "small"]) {
            if (mode === "small") await switchTo("small");
            for (const n of LEVELS) {
                if (users.length < n)
                    users = [...users, ...(await makeUsers(n - users.length, `u${users.length}x`, secret))];
                const r = await load(users.slice(0, n), LEVELS.indexOf(n) + (mode === "small" ? LEVELS.length : 0));
                const p50 = r.latencies.length ? quantile(r.latencies, 0.5) : NaN;
                const p95 = r.latencies.length ? quantile(r.latencies, 0.95) : NaN;
                const line = `${mode.padEnd(5)} N=${String(n).padStart(3)} (${n / ROOM_SIZE} rooms): sent ${(r.sent / SECONDS).toFixed(1)} msg/s, delivered ${(r.delivered / SECONDS).toFixed(1)} msg/s, send→receive p50 ${p50} ms p95 ${p95} ms, errors ${r.errors}`;
                results.push(line);
                figure(line);
                if (!(p95 <= 1000) && crossing[mode] === undefined) crossing[mode] = `N=${n}`;
            }
        }
        await switchTo("none");
        for (const mode of ["none", "small"]) {
            figure(
                `p95 above 1 s with ${mode}: ${crossing[mode] ?? `not reached up to N=${LEVELS[LEVELS.length - 1]}`}`,
            );
        }
    } finally {
        await stopSession();
    }
    console.log(`\nmatrix-pulumi load bench (${new Date().toISOString().slice(0, 10)}, ${machine}):`);
    for (const l of lines) console.log(`  ${l}`);
}

main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
});
