// Two homeservers deployed side by side by the real Pulumi CLI, federating through a private CA:
// server A (a.test) delegates to matrix.a.test:443 from its apex; server B (b.test) has no
// delegation and takes federation on port 8448. Both hosts resolve each other through the test
// DNS. matrix-js-sdk clients on each side, then Element (a real release build) in Debian's
// Chromium against A. Needs root and the toolchain from `npm run tools:pulumi`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { fetch } from "undici";
import { withTunnel } from "../../lib/registerUser";
import { hostPackages } from "../../render/packages";
import { shq } from "../../render/shell";
import { selfCheckFromStack } from "../../scripts/self-check";
import type { Run } from "../../lab/pulumi";
import {
    CACHE,
    explainFailure,
    get,
    matrixClient,
    publishDns,
    quantile,
    rawConfig,
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
import {
    callThroughSfu,
    dropTraffic,
    jwtClaims,
    liveKitToken,
    turnAllocate,
    turnCredentials,
    turnPassword,
} from "./calls";

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
    const settings = (s: Server, more: Record<string, unknown> = {}) =>
        s.settings({
            more,
            federation: {
                caBundle: session.acme.issuingRoot,
                allowedServers: ["a.test", "b.test"],
                allowedIpRanges: ["10.231.0.0/16"],
            },
            ...(s === a ? { element: { ...session.artifacts.elements[RELEASES.real.key] } } : {}),
            users: [{ name: s === a ? "alice" : "bob", admin: true }],
        });

    beforeAll(async () => {
        // Both hosts come with the Debian packages of their first deploy (coturn, with calls, is
        // installed by the program: its install path, masked until configured, is part of what
        // the calls tests check). The e2e suite deploys onto a bare host.
        const packages = hostPackages({ firewall: true });
        session = await startSession(path.join(CACHE, "run-federation"), SLOTS.federation, [
            { name: "fed-a", domain: "a.test", nameserver: true, packages },
            { name: "fed-b", domain: "b.test", delegation: "none", nameserver: true, packages },
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

    describe("calls on A: MatrixRTC (LiveKit, lk-jwt-service) and TURN (coturn), turned on and off by config", () => {
        const on: Partial<Record<"preview" | "up", Run>> = {};
        let serviceUrl: string;
        /** A Matrix room id the SFU's room is derived from (lk-jwt-service hashes it). */
        const callRoom = (label: string) => `!${label}-${Date.now()}:a.test`;
        const hosts = () => ({ [a.hs]: a.host.guestIp, [a.domain]: a.host.guestIp });
        /** LiveKit's own account of each participant's transport (its "participant active" lines). */
        // LiveKit's log after a cursor, not after a time: `--since` counts whole seconds, so a call
        // that ended in the second the next one starts would be counted with it.
        const transports = (cursor: string) =>
            [
                ...a
                    .sh(
                        `journalctl -u matrix-livekit --after-cursor ${shq(cursor)} --no-pager -o cat | grep 'participant active' || true`,
                    )
                    .stdout.matchAll(/"connectionType": "(\w+)"/g),
            ].map((m) => m[1]);
        const journalCursor = () => {
            const out = a.sh("journalctl -u matrix-livekit -n 1 --show-cursor --no-pager -o cat").stdout;
            const cursor = out.match(/^-- cursor: (\S+)$/m);
            assert.ok(cursor, `journalctl printed no cursor: ${out}`);
            return cursor[1]!;
        };
        /** A call through A's SFU from this machine: A's names and the test CA, as a user's would be. */
        const call = (url: string, jwtA: string, jwtB: string, timeoutMs?: number) =>
            callThroughSfu({
                url,
                jwtA,
                jwtB,
                hosts: hosts(),
                caPem: session.acme.issuingRoot,
                run: session.run,
                timeoutMs,
            });

        beforeAll(async () => {
            assert.ok(session.artifacts.rtc, "the MatrixRTC release files are built (npm run tools:rtc)");
            const calls = settings(a, { rtc: { ...session.artifacts.rtc }, turn: {} });
            on.preview = await timed("preview (A: calls on)", () => a.preview(calls));
            on.up = await timed("up (A: calls on)", () => a.deploy(calls));
            assert.equal(on.up.code, 0, explainFailure(on.up, a));
            serviceUrl = `https://${a.hs}/livekit/jwt`;
        });

        it("changed what its preview listed: the calls' own resources, and of the rest only Synapse's config, the vhosts and the firewall", () => {
            assert.deepEqual(on.up!.changed, on.preview!.changed);
            const own = on.up!.changed.filter((n) => /^(rtc|turn)(-|$)/.test(n));
            assert.deepEqual(
                on.up!.changed.filter((n) => !own.includes(n)),
                [
                    "firewall-apply",
                    "firewall-rules",
                    "nginx-apex-vhost",
                    "nginx-homeserver-vhost",
                    "nginx-sites",
                    "packages-install",
                    "synapse-homeserver-yaml",
                    "synapse-secrets-yaml",
                    "synapse-service",
                    "synapse-turn-shared-secret",
                ],
            );
            assert.ok(own.includes("rtc-service") && own.includes("turn-service"), own.join(", "));
        });

        it("opens the calls' UDP ports in the host firewall: ICE, TURN and the relay range", () => {
            // LiveKit's own connectivity checks can open the way back through a stateful firewall,
            // so a call alone does not show the rule; coturn's allocations do (below).
            assert.match(
                a.sh("nft list chain inet matrix_pulumi input").stdout,
                /udp dport \{ 3478, 7882, 49152-49251 \} accept/,
            );
        });

        it("announces the LiveKit focus in the client well-known and in Synapse's transports endpoint", async () => {
            const focus = { type: "livekit", livekit_service_url: serviceUrl };
            const wk = (await (await get("https://a.test/.well-known/matrix/client")).json()) as Record<
                string,
                unknown
            >;
            assert.deepEqual(wk["org.matrix.msc4143.rtc_foci"], [focus]);
            const url = `https://${a.hs}/_matrix/client/unstable/org.matrix.msc4143/rtc/transports`;
            assert.equal((await get(url)).status, 401, "authenticated");
            const res = await get(url, { headers: { Authorization: `Bearer ${alice.getAccessToken()}` } });
            assert.deepEqual(await res.json(), { rtc_transports: [focus] });
        });

        it("gives alice a LiveKit token for a room through nginx, and refuses a token whose claimed user is not hers", async () => {
            const room = callRoom("alice");
            const t = await liveKitToken(serviceUrl, alice, room);
            assert.equal(t.status, 200, JSON.stringify(t.body));
            assert.equal(t.body.url, `wss://${a.hs}/livekit/sfu`);
            const grant = jwtClaims(t.body.jwt!).video as Record<string, unknown>;
            assert.equal(grant.roomJoin, true);
            assert.equal(typeof grant.room, "string");
            const forged = await liveKitToken(serviceUrl, alice, room, bob.getUserId()!);
            assert.equal(forged.status, 401);
            assert.equal(forged.body.errcode, "M_UNAUTHORIZED");
        });

        it("admits bob from B only into a call a user of A has opened (LIVEKIT_FULL_ACCESS_HOMESERVERS = a.test)", async () => {
            const room = callRoom("restricted");
            const bobs = await liveKitToken(serviceUrl, bob, room);
            assert.equal(bobs.status, 200, "B's user is verified through B's federation API");
            // Alone, bob's tokens (two memberships: two LiveKit identities) open nothing: the SFU
            // creates rooms only for full-access users.
            const bobsSecond = await liveKitToken(serviceUrl, bob, room, bob.getUserId()!, "second-membership");
            const alone = await call(bobs.body.url!, bobs.body.jwt!, bobsSecond.body.jwt!, 10_000).then(
                () => "joined",
                (err: Error) => err.message,
            );
            console.log(`bob's token alone: ${alone}`);
            assert.match(alone, /the call failed[\s\S]*room does not exist/i);
            const alices = await liveKitToken(serviceUrl, alice, room);
            assert.equal(alices.status, 200);
            const bobsAgain = await liveKitToken(serviceUrl, bob, room);
            const heard = await timed("call: alice (A) to bob (B)", () =>
                call(alices.body.url!, alices.body.jwt!, bobsAgain.body.jwt!),
            );
            assert.equal(heard.data, "ping from A");
            assert.ok(heard.rms > 1000, `bob heard a tone (rms ${heard.rms})`);
        });

        for (const [transport, blocked, ports] of [
            ["UDP", "tcp", [7881]],
            ["TCP", "udp", [7882]],
        ] as const) {
            it(`carries a participant's audio to the other over ${transport} through the host firewall (${blocked.toUpperCase()} ${ports.join(", ")} dropped)`, async () => {
                const room = callRoom(transport.toLowerCase());
                const jwt = async (mx: MatrixClient) => (await liveKitToken(serviceUrl, mx, room)).body.jwt!;
                const since = journalCursor();
                const release = dropTraffic(a.host.guestIp, blocked, [...ports]);
                let dropped = 0;
                let heard;
                try {
                    heard = await call(`wss://${a.hs}/livekit/sfu`, await jwt(alice), await jwt(bob));
                } finally {
                    dropped = release();
                }
                console.log(
                    `call over ${transport}: B connected in ${heard.connectB} ms, subscribed at ${heard.subscribed} ms, first audio frame at ${heard.firstFrame} ms (${heard.frames} frames, rms ${heard.rms}); ${dropped} ${blocked.toUpperCase()} packets dropped on the way`,
                );
                assert.ok(heard.firstFrame >= 0 && heard.firstFrame < 5000, `first frame at ${heard.firstFrame} ms`);
                assert.ok(heard.rms > 1000, `a tone, not silence (rms ${heard.rms})`);
                assert.deepEqual(transports(since), [transport.toLowerCase(), transport.toLowerCase()]);
            });
        }

        it("allocates a TURN relay on coturn with the credentials Synapse hands alice, over UDP and TCP, and refuses a wrong secret's", async () => {
            const c = await turnCredentials(alice);
            assert.deepEqual(c.uris, [
                `turn:${a.hs}:3478?transport=udp`,
                `turn:${a.hs}:3478?transport=tcp`,
                `turns:${a.hs}:5349?transport=tcp`,
            ]);
            assert.equal(c.ttl, 3600);
            assert.match(c.username, new RegExp(`^\\d+:${alice.getUserId()!.replace(/\./g, "\\.")}$`));
            for (const tcp of [false, true]) {
                const good = turnAllocate(a.host.guestIp, c, tcp);
                assert.equal(good.code, 0, good.output);
                const bad = turnAllocate(
                    a.host.guestIp,
                    { ...c, password: turnPassword("not the secret", c.username) },
                    tcp,
                );
                assert.equal(bad.code, 255, bad.output);
                assert.match(bad.output, /Cannot complete Allocation/);
            }
        });

        it("serves TURN over TLS with the homeserver host's certificate", () => {
            const ca = path.join(session.run, "turn-ca.pem");
            writeFileSync(ca, session.acme.issuingRoot);
            const r = spawnSync(
                "openssl",
                ["s_client", "-connect", `${a.host.guestIp}:5349`, "-servername", a.hs, "-tls1_2"].concat([
                    "-verify_return_error",
                    "-verify_hostname",
                    a.hs,
                    "-CAfile",
                    ca,
                ]),
                { input: "", encoding: "utf8", timeout: 20_000 },
            );
            assert.match(r.stdout, /Verify return code: 0 \(ok\)/, r.stdout + r.stderr);
            // coturn ignores an option it does not know, with a log line: every line of ours is known.
            const journal = a.sh("journalctl -u coturn --no-pager -o cat").stdout;
            assert.doesNotMatch(journal, /Bad configuration format/);
            assert.match(journal, /turn server id=\d+ created/, "coturn logs to the journal");
        });

        it("npm run self-check passes A's calls, and fails them with lk-jwt-service stopped and ICE/TCP blocked on the way", async () => {
            const check = async () => {
                const outputs = await a.stack.outputs(true);
                const ca = path.join(session.run, "self-check-ca.pem");
                writeFileSync(ca, session.acme.issuingRoot);
                const lines: string[] = [];
                const report = await selfCheckFromStack(
                    ["--ca", ca, "--no-system-ca", "--resolver", session.acme.dnsServer],
                    () => ({
                        config: () => rawConfig(settings(a, { rtc: { ...session.artifacts.rtc }, turn: {} })),
                        outputs: () => outputs,
                    }),
                    {},
                    (line) => lines.push(line),
                );
                console.log(`self-check (A, calls on):\n${lines.join("\n")}`);
                return new Map(report.results.map((r) => [r.id, r.status]));
            };
            const calls = [
                "calls focus",
                "calls authorisation",
                "calls sfu",
                "calls ice/tcp",
                "calls turn/tcp",
                `tls ${a.hs}:5349`,
            ];
            const clean = await check();
            assert.deepEqual(
                calls.map((id) => [id, clean.get(id)]),
                calls.map((id) => [id, "pass"]),
            );
            for (const unit of ["matrix-livekit", "matrix-lk-jwt-service", "coturn"])
                assert.equal(clean.get(`unit ${unit}`), "pass", unit);
            a.sh("systemctl stop matrix-lk-jwt-service");
            const release = dropTraffic(a.host.guestIp, "tcp", [7881]);
            let faulty: Map<string, string>;
            try {
                faulty = await check();
            } finally {
                release();
                a.sh("systemctl start matrix-lk-jwt-service");
            }
            assert.deepEqual(
                [...faulty]
                    .filter(([, status]) => status === "fail")
                    .map(([id]) => id)
                    .sort(),
                ["calls authorisation", "calls ice/tcp", "unit matrix-lk-jwt-service"],
            );
        });

        describe("turned off again", () => {
            const off: Partial<Record<"preview" | "up", Run>> = {};
            beforeAll(async () => {
                off.preview = await timed("preview (A: calls off)", () => a.preview(settings(a)));
                off.up = await timed("up (A: calls off)", () => a.deploy(settings(a)));
                assert.equal(off.up.code, 0, explainFailure(off.up, a));
            });
            it("changed what its preview listed: the same resources as turning calls on", () => {
                assert.deepEqual(off.up!.changed, off.preview!.changed);
                assert.deepEqual(off.up!.changed, on.up!.changed);
            });
            it("stopped and removed the services, their files, binaries and users, and closed their ports", async () => {
                const state = a.sh(
                    [
                        "for u in matrix-livekit matrix-lk-jwt-service coturn; do printf '%s=%s\\n' $u \"$(systemctl is-active $u || true)\"; done",
                        "ls /etc/systemd/system/matrix-livekit.service /etc/systemd/system/matrix-lk-jwt-service.service /opt/matrix-rtc /etc/matrix-rtc /etc/matrix-pulumi/turn /etc/systemd/system/coturn.service.d/matrix-pulumi.conf /etc/letsencrypt/renewal-hooks/deploy/matrix-pulumi-coturn 2>&1 | grep -c 'No such file' || true",
                        "getent passwd matrix-livekit matrix-lk-jwt | wc -l",
                        "grep -c udp /etc/matrix-pulumi/firewall.nft || true",
                        "ss -Hlun | grep -cE ':(7882|3478) ' || true",
                    ].join("; "),
                ).stdout;
                assert.deepEqual(state.trim().split("\n"), [
                    "matrix-livekit=inactive",
                    "matrix-lk-jwt-service=inactive",
                    "coturn=inactive",
                    "7",
                    "0",
                    "0",
                    "0",
                ]);
                const wk = (await (await get("https://a.test/.well-known/matrix/client")).json()) as Record<
                    string,
                    unknown
                >;
                assert.equal(wk["org.matrix.msc4143.rtc_foci"], undefined);
                const transports = await get(
                    `https://${a.hs}/_matrix/client/unstable/org.matrix.msc4143/rtc/transports`,
                    {
                        headers: { Authorization: `Bearer ${alice.getAccessToken()}` },
                    },
                );
                assert.equal(transports.status, 404);
                assert.equal((await get(`https://${a.hs}/livekit/jwt/healthz`)).status, 404);
            });
        });
    });
});
