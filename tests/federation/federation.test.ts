// Two homeservers deployed side by side by the real Pulumi CLI, federating through a private CA:
// server A (a.test) delegates to matrix.a.test:443 from its apex; server B (b.test) has no
// delegation and takes federation on port 8448. Both hosts resolve each other through the test
// DNS. matrix-js-sdk clients on each side, then Element (a real release build) in Debian's
// Chromium against A. Needs root and the toolchain from `npm run tools:pulumi`.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { fetch } from "undici";
import { withTunnel } from "../../lib/registerUser";
import type { Run } from "../e2e/pulumi";
import {
    CACHE,
    explainFailure,
    get,
    matrixClient,
    publishDns,
    quantile,
    RELEASES,
    SLOTS,
    startSession,
    stopSession,
    timed,
    type MatrixClient,
    type Server,
    type Session,
} from "../e2e/session";
import { openElement, type ElementSession } from "./browser";

/** A PNG of 4×4 pixels: an image alice uploads on A and bob fetches through B. */
const PNG = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEklEQVR4nGP4z8DAwMDAxMAAAAoOAQ5bXbnNAAAAAElFTkSuQmCC",
    "base64",
);

/** Synapse allows a user 0.2 messages/s; lift it for a test account, as for a bot (admin API, via SSH). */
async function liftRateLimit(server: Server, mx: MatrixClient): Promise<void> {
    await withTunnel(server.target(), async (base) => {
        const r = await fetch(
            `${base}/_synapse/admin/v1/users/${encodeURIComponent(mx.getUserId()!)}/override_ratelimit`,
            {
                method: "POST",
                headers: { Authorization: `Bearer ${mx.getAccessToken()}` },
                body: JSON.stringify({ messages_per_second: 0, burst_count: 0 }),
            },
        );
        assert.equal(r.status, 200, await r.text());
    });
}

/** Waits until `mx` sees `body` in `roomId` (its own /messages), returning when it did. */
async function arrival(mx: MatrixClient, roomId: string, body: string, timeoutMs = 90_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const res = (await (
            await get(
                `${mx.getHomeserverUrl()}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=30`,
                { headers: { Authorization: `Bearer ${mx.getAccessToken()}` } },
            )
        ).json()) as { chunk?: { type: string; content: { body?: string } }[] };
        if ((res.chunk ?? []).some((e) => e.type === "m.room.message" && e.content.body === body)) return Date.now();
        if (Date.now() > deadline) throw new Error(`"${body}" did not arrive in ${timeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** The bodies of the newest messages `mx` sees in `roomId`, oldest first. */
async function bodies(mx: MatrixClient, roomId: string): Promise<string[]> {
    const res = (await (
        await get(
            `${mx.getHomeserverUrl()}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`,
            { headers: { Authorization: `Bearer ${mx.getAccessToken()}` } },
        )
    ).json()) as { chunk: { type: string; content: { body?: string } }[] };
    return res.chunk
        .filter((e) => e.type === "m.room.message")
        .map((e) => String(e.content.body))
        .reverse();
}

describe("federation: two homeservers deployed by the real Pulumi CLI", () => {
    let session: Session;
    let a: Server;
    let b: Server;
    const runs: Record<string, Run> = {};
    let alice: MatrixClient;
    let bob: MatrixClient;
    let passwords: { alice: string; bob: string };
    let roomId: string;
    /** Each server's settings: a closed federation of the two, trusting only the test CA. */
    const settings = (s: Server) =>
        s.settings({
            federation: {
                caBundle: session.acme.issuingRoot,
                allowedServers: ["a.test", "b.test"],
                allowedIpRanges: ["10.231.0.0/16"],
            },
            ...(s === a ? { element: { ...session.artifacts.elements[RELEASES.real.key] } } : {}),
            users: [{ name: s === a ? "alice" : "bob", admin: true }],
        });

    beforeAll(async () => {
        session = await startSession(path.join(CACHE, "run-federation"), SLOTS.federation, [
            { name: "fed-a", domain: "a.test", nameserver: true },
            { name: "fed-b", domain: "b.test", delegation: "none", nameserver: true },
        ]);
        [a, b] = session.servers as [Server, Server];
        for (const s of [a, b]) {
            const p = await timed(`preview (${s.domain})`, () => s.preview(settings(s)));
            assert.equal(p.code, 0, explainFailure(p, s));
            await publishDns(p, session);
            runs[`preview ${s.name}`] = p;
        }
        // Both at once, as two operators would.
        const [ua, ub] = await timed("up (both servers, side by side)", () =>
            Promise.all([a.deploy(settings(a)), b.deploy(settings(b))]),
        );
        assert.equal(ua.code, 0, explainFailure(ua, a));
        assert.equal(ub.code, 0, explainFailure(ub, b));
        runs[`up ${a.name}`] = ua;
        runs[`up ${b.name}`] = ub;
        passwords = {
            alice: ((await a.stack.outputs(true)).userPasswords as Record<string, string>).alice!,
            bob: ((await b.stack.outputs(true)).userPasswords as Record<string, string>).bob!,
        };
        alice = await matrixClient("alice", passwords.alice, a.hs);
        bob = await matrixClient("bob", passwords.bob, b.hs);
        await liftRateLimit(a, alice);
        await liftRateLimit(b, bob);
    });

    afterAll(() => stopSession(session));

    it("created on each host exactly what its preview listed", () => {
        for (const s of [a, b]) {
            assert.deepEqual(runs[`up ${s.name}`]!.changed, runs[`preview ${s.name}`]!.changed, s.name);
        }
    });

    it("finds A through its apex's well-known document, and B on port 8448", async () => {
        const wk = (await (await get("https://a.test/.well-known/matrix/server")).json()) as Record<string, string>;
        assert.deepEqual(wk, { "m.server": "matrix.a.test:443" });
        assert.equal((await get("https://b.test/.well-known/matrix/server")).status, 404);
        const version = (await (await get("https://b.test:8448/_matrix/federation/v1/version")).json()) as {
            server: { name: string };
        };
        assert.equal(version.server.name, "Synapse");
        // Each host resolves the other's names through the test DNS.
        assert.match(a.sh("getent hosts b.test").stdout, new RegExp(`^${b.host.guestIp.replace(/\./g, "\\.")} `));
        assert.match(
            b.sh("getent hosts matrix.a.test").stdout,
            new RegExp(`^${a.host.guestIp.replace(/\./g, "\\.")} `),
        );
    });

    describe("a room of alice's on A that bob on B joins", () => {
        beforeAll(async () => {
            roomId = (await alice.createRoom({ name: "Federation", invite: [bob.getUserId()!] })).room_id;
            await timed("bob joins over federation", async () => {
                const deadline = Date.now() + 60_000;
                for (;;) {
                    try {
                        await bob.joinRoom(roomId, { viaServers: ["a.test"] });
                        break;
                    } catch (err) {
                        if (Date.now() > deadline) throw err;
                        await new Promise((r) => setTimeout(r, 1000));
                    }
                }
            });
        });
        it("carries messages both ways", async () => {
            const toB = `from A ${Date.now()}`;
            await alice.sendTextMessage(roomId, toB);
            await arrival(bob, roomId, toB);
            const toA = `from B ${Date.now()}`;
            await bob.sendTextMessage(roomId, toA);
            await arrival(alice, roomId, toA);
        });
        it("has each server hold the other's signing key (key query through its own server)", async () => {
            for (const [via, of] of [
                [a, b],
                [b, a],
            ] as const) {
                const res = (await (await get(`https://${via.hs}/_matrix/key/v2/query/${of.domain}`)).json()) as {
                    server_keys: { server_name: string; verify_keys: Record<string, unknown> }[];
                };
                const keys = res.server_keys.filter((k) => k.server_name === of.domain);
                assert.ok(
                    keys.length > 0 && Object.keys(keys[0]!.verify_keys).length > 0,
                    `${via.domain} has ${of.domain}'s key`,
                );
                // The key it holds is the one the other server itself publishes.
                const own = (await (
                    await get(`https://${of.hs}${of.delegation === "none" ? ":8448" : ""}/_matrix/key/v2/server`)
                ).json()) as {
                    verify_keys: Record<string, unknown>;
                };
                assert.deepEqual(Object.keys(keys[0]!.verify_keys), Object.keys(own.verify_keys));
            }
        });
        it("serves an image uploaded on A to bob's client through B (authenticated media over federation)", async () => {
            const { content_uri } = await alice.uploadContent(PNG, { name: "pixel.png", type: "image/png" });
            await alice.sendMessage(roomId, { msgtype: "m.image", body: "pixel.png", url: content_uri } as never);
            const [, mediaServer, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(content_uri)!;
            assert.equal(mediaServer, "a.test");
            const url = `https://${b.hs}/_matrix/client/v1/media/download/${mediaServer}/${mediaId}`;
            assert.equal((await get(url)).status, 401, "authenticated media: no token, no image");
            const res = await get(url, { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } });
            assert.equal(res.status, 200, await res.clone().text());
            const body = Buffer.from(await res.arrayBuffer());
            assert.equal(
                createHash("sha256").update(body).digest("hex"),
                createHash("sha256").update(PNG).digest("hex"),
            );
        });
        it("lets alice join a room of bob's on B by its alias", async () => {
            const bobsRoom = (
                await bob.createRoom({
                    name: "Bob's",
                    room_alias_name: "bobs-room",
                    visibility: "public" as never,
                    preset: "public_chat" as never,
                })
            ).room_id;
            const joined = await alice.joinRoom("#bobs-room:b.test");
            assert.equal(joined.roomId, bobsRoom);
            const hello = `alice in bob's room ${Date.now()}`;
            await alice.sendTextMessage(bobsRoom, hello);
            await arrival(bob, bobsRoom, hello);
        });
        it("delivers messages from A to B in well under a second (p50 of 20)", async () => {
            const latencies: number[] = [];
            for (let i = 0; i < 20; i++) {
                const body = `latency ${i} ${Date.now()}`;
                const start = Date.now();
                await alice.sendTextMessage(roomId, body);
                latencies.push((await arrival(bob, roomId, body)) - start);
            }
            const p50 = quantile(latencies, 0.5);
            console.log(
                `federation latency, send on A to arrival at bob's client on B: p50 ${p50} ms, p95 ${quantile(latencies, 0.95)} ms, max ${Math.max(...latencies)} ms (20 messages)`,
            );
            assert.ok(p50 < 1000, `p50 ${p50} ms`);
        });
        it("delivers, in order, three messages sent while B was down, once B is back", async () => {
            b.sh("systemctl stop matrix-synapse");
            const sent = [1, 2, 3].map((i) => `while B was down ${i} ${Date.now()}`);
            for (const m of sent) await alice.sendTextMessage(roomId, m);
            const start = Date.now();
            assert.equal(
                b
                    .sh(
                        "systemctl start matrix-synapse && until curl -fsS http://127.0.0.1:8008/health >/dev/null 2>&1; do sleep 0.3; done && echo up",
                    )
                    .stdout.trim(),
                "up",
            );
            // B back says so to A (its first request resets A's retry timer for B).
            await bob.sendReadReceipt(null).catch(() => undefined);
            await bob.sendTyping(roomId, true, 1000).catch(() => undefined);
            await arrival(bob, roomId, sent[2]!);
            console.log(
                `federation retry: B received the three messages ${((Date.now() - start) / 1000).toFixed(1)} s after it started again`,
            );
            const seen = (await bodies(bob, roomId)).filter((m) => sent.includes(m));
            assert.deepEqual(seen, sent);
        });
        it("keeps federating after A's certificate is replaced by a new one from the CA (pulumi up --replace)", async () => {
            const before = a.certificateSerials(a.hs).stored;
            const replaced = await timed("up --replace (A's homeserver certificate)", () =>
                a.deploy(settings(a), { replace: ["nginx-certificate-homeserver"] }),
            );
            assert.equal(replaced.code, 0, explainFailure(replaced, a));
            const cert = a.certificateSerials(a.hs);
            assert.notEqual(cert.stored, before);
            assert.equal(cert.served, cert.stored, "nginx serves the new certificate");
            const after = `after the new certificate ${Date.now()}`;
            await alice.sendTextMessage(roomId, after);
            await arrival(bob, roomId, after);
            const back = `bob after the new certificate ${Date.now()}`;
            await bob.sendTextMessage(roomId, back);
            await arrival(alice, roomId, back);
        });
    });

    describe("Element (a real release build) in Debian's Chromium, against A", () => {
        let element: ElementSession;
        const typed = `typed in Element ${Date.now()}`;
        beforeAll(async () => {
            element = await timed("Chromium: open Element, sign in as alice", () =>
                openElement({
                    run: session.run,
                    elementUrl: `https://${a.el}`,
                    caPem: session.acme.issuingRoot,
                    hosts: { [a.el]: a.host.guestIp, [a.hs]: a.host.guestIp, [a.domain]: a.host.guestIp },
                }),
            );
        });
        afterAll(() => element?.close());
        it("offers no account creation on the welcome page while registration is closed", async () => {
            assert.equal(await element.registrationOffered(), false);
        });
        it("signs alice in through Element's own form, opens the room and sends a message bob receives on B", async () => {
            await element.signIn("alice", passwords.alice);
            await element.send("Federation", typed);
            await arrival(bob, roomId, typed);
        });
        it("runs Element's service worker (authenticated media needs it)", async () => {
            assert.ok((await element.serviceWorkers()) >= 1);
        });
        it("saves a screenshot of the room", async () => {
            const file = await element.screenshot(path.join(session.run, "element-room.png"));
            console.log(`screenshot: ${file}`);
        });
    });
});
