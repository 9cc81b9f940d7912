// Cloudflare for real: the real provider plugin (npm run tools:cloudflare), driven by the real
// Pulumi CLI against the lab's Cloudflare API (lab/cloudflare.ts), in front of a real host. The
// API's A and AAAA records are what the test DNS answers, so pebble validates the certificates
// through the records the provider made: records → names resolve → ACME. Needs root; run by
// `npm run test:cloudflare`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { cfId, FakeCloudflare, type CfRecord, type RecordedRequest } from "../../lab/cloudflare";
import type { Run } from "../../lab/pulumi";
import { recordComment } from "../../lib/cloudflare";
import {
    CACHE,
    ctx,
    deploy,
    explainFailure,
    get,
    preview,
    resolver,
    sh,
    SLOTS,
    startSession,
    stopSession,
    timed,
    type StackSettings,
} from "../e2e/session";

const RUN = path.join(CACHE, "run-cloudflare");
const DOMAIN = "cf.test";
const NAMES = { homeserver: `matrix.${DOMAIN}`, element: `element.${DOMAIN}`, apex: DOMAIN };
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";
// A token as Cloudflare's look: 40 characters of [A-Za-z0-9_-].
const TOKEN = randomBytes(30).toString("base64url");
const ZONE = { id: cfId(), name: DOMAIN };
const OTHER_ZONE = { id: cfId(), name: "elsewhere.test" };
const OWNER = "matrix/cf";
// The host's addresses: SSH stays on its lab address (matrix:machine.sshHost); the public ones
// the records carry are added beside it (the second IPv4 is where the server "moves").
let sshAddress: string;
let firstIpv4: string;
let movedIpv4: string;
let ipv6: string;

let api: FakeCloudflare;
const runs: Run[] = [];
/** What this machine's processes carried in their arguments while the stack ran (sampled). */
const argvSeen = new Set<string>();

/** The stack's settings: matrix:dns on the lab's API, the token a secret, SSH apart from the records. */
function settings(over: { ipv4?: string; token?: string; zoneId?: string } = {}): StackSettings {
    const base = ctx.server.settings({ more: { dns: { zoneId: over.zoneId ?? ZONE.id, ttl: 300 } } });
    const machine = base.plain["matrix:machine"] as Record<string, unknown>;
    return {
        plain: {
            ...base.plain,
            "matrix:machine": { ...machine, ipv4: over.ipv4 ?? firstIpv4, ipv6, sshHost: sshAddress },
            "cloudflare:baseUrl": api.baseUrl,
        },
        secrets: { ...base.secrets, "cloudflare:apiToken": over.token ?? TOKEN },
    };
}

/** Runs `fn` (a preview or an up), keeping its result and the API requests it made. */
async function tracked(label: string, fn: () => Promise<Run>): Promise<{ run: Run; requests: RecordedRequest[] }> {
    const before = api.requests.length;
    const sampler = sampleArgs();
    const run = await timed(label, fn);
    sampler.stop();
    runs.push(run);
    await api.settled();
    return { run, requests: api.requests.slice(before) };
}

/** Every process's arguments on this machine, every 100 ms (the token must never be among them). */
function sampleArgs(): { stop(): void } {
    const timer = setInterval(() => {
        const ps = spawnSync("ps", ["-eww", "-o", "args="], { encoding: "utf8" });
        for (const line of ps.stdout.split("\n")) argvSeen.add(line);
    }, 100);
    return { stop: () => clearInterval(timer) };
}

const records = () => api.list(ZONE.id);
const ours = () => records().filter((r) => r.comment === recordComment(OWNER));
const recordOf = (name: string, type: string) => ours().find((r) => r.name === name && r.type === type);
const recordSteps = (run: Run, op?: string) =>
    run.steps
        .filter((s) => s.type === RECORD && (!op || s.op === op))
        .map((s) => s.name)
        .sort();
const ALL_RECORDS = [
    "dns-apex-a",
    "dns-apex-aaaa",
    "dns-element-a",
    "dns-element-aaaa",
    "dns-homeserver-a",
    "dns-homeserver-aaaa",
];
const A_RECORDS = ["dns-apex-a", "dns-element-a", "dns-homeserver-a"];

/** HTTPS to `name` at `address` (IPv6 in brackets), trusting pebble's root: the status code. */
function curlStatus(name: string, address: string, ca: string): string {
    const r = spawnSync("curl", [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        ca,
        "--resolve",
        `${name}:443:${address}`,
        `https://${name}/_matrix/client/versions`,
    ]);
    return `${r.stdout.toString()}${r.stderr.toString()}`;
}

beforeAll(async () => {
    await startSession(RUN, SLOTS.cloudflare, [{ name: "cf", domain: DOMAIN }]);
    api = new FakeCloudflare({ token: TOKEN, zones: [ZONE, OTHER_ZONE], dns: ctx.acme.challtestsrv });
    await api.start();
    // Someone else's records in the zone, at other names and of another type: never touched.
    api.add(ZONE.id, { name: "www", type: "A", content: "192.0.2.80" });
    api.add(ZONE.id, { name: DOMAIN, type: "TXT", content: "v=spf1 -all" });

    // Public addresses on the host, routed from this machine: a second IPv4 and an IPv6 /64.
    const { guestIp, machine } = ctx.host.net;
    const n = guestIp.split(".")[2];
    sshAddress = guestIp;
    firstIpv4 = guestIp;
    movedIpv4 = `10.232.${n}.2`;
    ipv6 = `fd00:231:${n}::2`;
    const add = sh(
        `sysctl -qw net.ipv6.conf.host0.disable_ipv6=0 && ip addr add ${movedIpv4}/32 dev host0 && ip -6 addr add ${ipv6}/64 dev host0 nodad`,
    );
    assert.equal(add.code, 0, add.stderr);
    for (const args of [
        ["route", "add", `${movedIpv4}/32`, "dev", `ve-${machine}`],
        ["-6", "addr", "add", `fd00:231:${n}::1/64`, "dev", `ve-${machine}`, "nodad"],
    ]) {
        const r = spawnSync("ip", args, { encoding: "utf8" });
        assert.equal(r.status, 0, `ip ${args.join(" ")}: ${r.stderr}`);
    }
});

afterAll(async () => {
    await api?.stop();
    await stopSession();
});

describe("the first up with matrix:dns", () => {
    let first: { run: Run; requests: RecordedRequest[] };
    let planned: string[];
    let bystanders: CfRecord[];
    beforeAll(async () => {
        bystanders = records();
        const p = await tracked("preview (first, matrix:dns)", () => preview(settings()));
        assert.equal(p.run.code, 0, explainFailure(p.run));
        planned = recordSteps(p.run, "create");
        first = await tracked("up (first, matrix:dns)", () => deploy(settings()));
        assert.equal(first.run.code, 0, explainFailure(first.run));
    });

    it("creates exactly the records the preview listed: A and AAAA for each name", () => {
        assert.deepEqual(planned, ALL_RECORDS);
        assert.deepEqual(recordSteps(first.run, "create"), planned);
        const posts = first.requests.filter((r) => r.method === "POST");
        assert.equal(posts.length, 6);
        assert.ok(first.requests.every((r) => r.authorized && r.status === 200));
    });

    it("makes them DNS-only with the TTL asked for, the addresses of matrix:machine, and the stack's comment", () => {
        for (const name of Object.values(NAMES)) {
            for (const [type, content] of [
                ["A", firstIpv4],
                ["AAAA", ipv6],
            ] as const) {
                const r = recordOf(name, type);
                assert.ok(r, `${type} ${name}`);
                assert.deepEqual([r.content, r.ttl, r.proxied], [content, 300, false], `${type} ${name}`);
            }
        }
        assert.equal(ours().length, 6);
    });

    it("leaves the zone's other records alone", () => {
        assert.deepEqual(
            records().filter((r) => bystanders.some((b) => b.id === r.id)),
            bystanders,
        );
    });

    it("gets certificates for those names through them: pebble validated over the records' addresses", async () => {
        for (const name of Object.values(NAMES)) {
            const { stored, served } = ctx.server.certificateSerials(name);
            assert.ok(stored && stored === served, `${name}: stored ${stored}, served ${served}`);
            assert.deepEqual([...(await resolver.resolve4(name))], [firstIpv4]);
            assert.deepEqual([...(await resolver.resolve6(name))], [ipv6]);
        }
        assert.equal((await get(`https://${NAMES.homeserver}/_matrix/client/versions`)).status, 200);
        // And over IPv6, at the AAAA record's address.
        const ca = path.join(mkdtempSync(path.join(tmpdir(), "cf-ca-")), "root.pem");
        writeFileSync(ca, ctx.acme.issuingRoot);
        assert.equal(curlStatus(NAMES.homeserver, `[${ipv6}]`, ca), "200");
    });

    it("then previews no change: the records read back as the program asks for them", async () => {
        const again = await tracked("preview (after the first up)", () => preview(settings()));
        assert.equal(again.run.code, 0, explainFailure(again.run));
        assert.deepEqual(again.run.changed, []);
        // The refresh read each record back (GET by id).
        assert.equal(again.requests.filter((r) => r.method === "GET" && /dns_records\/\w+$/.test(r.path)).length, 6);
    });
});

describe("a new IPv4 address (matrix:machine.ipv4; SSH stays on matrix:machine.sshHost)", () => {
    let planned: Run;
    let moved: { run: Run; requests: RecordedRequest[] };
    let idsBefore: string[];
    beforeAll(async () => {
        idsBefore = ours()
            .map((r) => r.id)
            .sort();
        planned = (await tracked("preview (ipv4 changed)", () => preview(settings({ ipv4: movedIpv4 })))).run;
        moved = await tracked("up (ipv4 changed)", () => deploy(settings({ ipv4: movedIpv4 })));
        assert.equal(moved.run.code, 0, explainFailure(moved.run));
    });

    it("previews exactly the three A records as updates, and nothing else", () => {
        assert.equal(planned.code, 0, explainFailure(planned));
        assert.deepEqual(planned.changed, A_RECORDS);
        assert.deepEqual(recordSteps(planned, "update"), A_RECORDS);
    });

    it("updates them in place (PUT, the same ids: no gap without a record), and nothing else", () => {
        assert.deepEqual(moved.run.changed, A_RECORDS);
        const writes = moved.requests.filter((r) => r.method !== "GET");
        assert.deepEqual(
            writes.map((r) => r.method),
            ["PUT", "PUT", "PUT"],
        );
        assert.deepEqual(
            ours()
                .map((r) => r.id)
                .sort(),
            idsBefore,
        );
        for (const name of Object.values(NAMES)) assert.equal(recordOf(name, "A")?.content, movedIpv4);
    });

    it("serves the same names at the new address", async () => {
        assert.deepEqual([...(await resolver.resolve4(NAMES.element))], [movedIpv4]);
        assert.equal((await get(`https://${NAMES.homeserver}/_matrix/client/versions`)).status, 200);
    });
});

describe("drift: records changed and deleted in the dashboard", () => {
    let refreshed: Run;
    let fixed: { run: Run; requests: RecordedRequest[] };
    let deletedId: string;
    beforeAll(async () => {
        api.edit(recordOf(NAMES.element, "A")!.id, { content: "192.0.2.99", ttl: 1 });
        deletedId = recordOf(NAMES.homeserver, "AAAA")!.id;
        api.remove(deletedId);
        refreshed = (await tracked("preview --refresh (drift)", () => preview(settings({ ipv4: movedIpv4 })))).run;
        fixed = await tracked("up (drift)", () => deploy(settings({ ipv4: movedIpv4 })));
        assert.equal(fixed.run.code, 0, explainFailure(fixed.run));
    });

    it("shows in preview --refresh: the edited record to update, the deleted one to create", () => {
        assert.equal(refreshed.code, 0, explainFailure(refreshed));
        assert.deepEqual(refreshed.changed, ["dns-element-a", "dns-homeserver-aaaa"]);
        assert.deepEqual(recordSteps(refreshed, "update"), ["dns-element-a"]);
        assert.deepEqual(recordSteps(refreshed, "create"), ["dns-homeserver-aaaa"]);
    });

    it("is put back by up: the edit undone, the deleted record made again", () => {
        assert.deepEqual(fixed.run.changed, ["dns-element-a", "dns-homeserver-aaaa"]);
        assert.deepEqual([recordOf(NAMES.element, "A")?.content, recordOf(NAMES.element, "A")?.ttl], [movedIpv4, 300]);
        const again = recordOf(NAMES.homeserver, "AAAA");
        assert.ok(again && again.id !== deletedId && again.content === ipv6);
        assert.equal(ours().length, 6);
    });
});

describe("refused before any host step: a stranger's record, a wrong token, a wrong zone", () => {
    /** A run that must fail at the DNS check: its message, and that nothing was registered. */
    async function refused(label: string, s: StackSettings): Promise<string> {
        const before = api.list();
        const { run, requests } = await tracked(label, () => deploy(s));
        assert.notEqual(run.code, 0);
        // The refresh Pulumi.yaml asks for reads the stack's resources first (no script runs on a
        // refresh); then the check stops the program: nothing is created, changed or deleted.
        assert.deepEqual(run.changed, []);
        assert.deepEqual(
            [...new Set(run.steps.map((x) => x.op))].filter((op) => op !== "refresh" && op !== "same"),
            [],
        );
        assert.deepEqual(
            requests.filter((r) => r.method !== "GET"),
            [],
        );
        assert.deepEqual(api.list(), before);
        assert.match(run.errors, /nothing was deployed/);
        return run.errors;
    }

    it("a name already holding a record the stack did not create: named, with the fix", async () => {
        const stranger = api.add(ZONE.id, { name: NAMES.element, type: "A", content: "198.51.100.7" });
        try {
            const errors = await refused("up (a stranger's record)", settings({ ipv4: movedIpv4 }));
            assert.match(
                errors,
                new RegExp(
                    `matrix:dns: element\\.cf\\.test already has an A record \\(198\\.51\\.100\\.7, id ${stranger.id}\\) that this stack did not create; delete it`,
                ),
            );
        } finally {
            api.remove(stranger.id);
        }
    });

    it("a wrong token: named as cloudflare:apiToken, with Cloudflare's answer", async () => {
        const errors = await refused(
            "up (wrong token)",
            settings({ ipv4: movedIpv4, token: randomBytes(30).toString("base64url") }),
        );
        assert.match(
            errors,
            /cloudflare:apiToken: Cloudflare refused the token for zone \w+ \(10000 Authentication error\)/,
        );
    });

    it("an unknown zone, and a zone that does not hold the names: named as matrix:dns.zoneId", async () => {
        const unknown = cfId();
        assert.match(
            await refused("up (unknown zone)", settings({ ipv4: movedIpv4, zoneId: unknown })),
            new RegExp(`matrix:dns\\.zoneId: Cloudflare has no zone ${unknown} \\(7003 Could not route`),
        );
        assert.match(
            await refused("up (another domain's zone)", settings({ ipv4: movedIpv4, zoneId: OTHER_ZONE.id })),
            /matrix:dns\.zoneId: zone \w+ is elsewhere\.test, which does not hold matrix\.cf\.test, element\.cf\.test, cf\.test/,
        );
    });
});

describe("the token", () => {
    it("appears in no run's output, the state, the export or any process's arguments here", async () => {
        const places: [string, string][] = [
            ...runs.map((r, i): [string, string] => [
                `run ${i + 1} (${r.command})`,
                `${r.output}\n${r.errors}\n${r.debugOutput}`,
            ]),
            ["state file", readFileSync(ctx.stack.stateFile, "utf8")],
            ["pulumi stack export", await ctx.stack.export()],
            ["stack file", readFileSync(ctx.stack.stackFile, "utf8")],
            ["process arguments", [...argvSeen].join("\n")],
        ];
        assert.ok(argvSeen.size > 0);
        assert.deepEqual(
            places.filter(([, text]) => text.includes(TOKEN)).map(([where]) => where),
            [],
        );
        // The scan finds it where it is: the provider's state, decrypted.
        assert.ok((await ctx.stack.export(true)).includes(TOKEN));
    });
});

describe("destroy", () => {
    it("removes exactly the stack's six records, and nothing else in the zone", async () => {
        const mine = ours().map((r) => r.id);
        const others = records().filter((r) => !mine.includes(r.id));
        const { run, requests } = await tracked("destroy", () => ctx.stack.destroy());
        assert.equal(run.code, 0, explainFailure(run));
        assert.deepEqual(
            requests
                .filter((r) => r.method === "DELETE")
                .map((r) => r.path.split("/").pop())
                .sort(),
            [...mine].sort(),
        );
        assert.deepEqual(records(), others);
        assert.ok(others.length >= 2);
    });
});
