// The program's DNS check (lib/cloudflare.ts) over real HTTP, through its child process, against
// the lab's Cloudflare API (lab/cloudflare.ts); and that API's own refusals, as the provider meets them.
import assert from "node:assert/strict";
import { afterAll, afterEach, beforeAll, describe, test } from "@jest/globals";
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { Agent, fetch } from "undici";
import { cfId } from "../../lab/cloudflare";
import { checkDns, readCloudflareApi, recordComment } from "../../lib/cloudflare";

const TOKEN = "T".repeat(20) + "0123456789abcdefghij_-";
const ZONE = { id: cfId(), name: "example.org" };
const OWNER = "matrix/prod";
const NAMES = ["matrix.example.org", "element.example.org", "example.org"];

// The API runs in a process of its own: the check blocks this one's event loop while it asks.
let api: ChildProcess;
let baseUrl: string;
beforeAll(async () => {
    api = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "../../lab/cloudflare.ts")], {
        stdio: ["pipe", "pipe", "inherit"],
    });
    api.stdin!.write(`${JSON.stringify({ token: TOKEN, zones: [ZONE] })}\n`);
    baseUrl = await new Promise<string>((resolve) =>
        api.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim())),
    );
});
afterAll(() => {
    api.stdin!.end();
});

/** The API's request, with the right token unless told another; its status and body. */
async function call(method: string, p: string, body?: unknown, token = TOKEN) {
    // A fresh connection each time: a kept-alive one may be closed by the server as it is reused.
    const res = await fetch(`${baseUrl}/${p}`, {
        dispatcher: new Agent({ pipelining: 0 }),
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    return {
        status: res.status,
        body: (await res.json()) as {
            success: boolean;
            errors: { code: number }[];
            result: { id: string; name: string } & unknown[];
        },
    };
}
const records = `zones/${ZONE.id}/dns_records`;
const post = (body: Record<string, unknown>, token = TOKEN) => call("POST", records, body, token);
/** Every record of the zone, deleted (between tests). */
async function clear() {
    for (const r of (await call("GET", records)).body.result as { id: string }[])
        await call("DELETE", `${records}/${r.id}`);
}

const check = (over: { token?: string; zoneId?: string; names?: string[]; base?: string } = {}) =>
    checkDns(
        { baseUrl: over.base ?? baseUrl, token: over.token ?? TOKEN },
        { zoneId: over.zoneId ?? ZONE.id, names: over.names ?? NAMES, owner: OWNER },
        readCloudflareApi,
    );

describe("the DNS check, before anything is registered", () => {
    afterEach(clear);

    test("a zone holding every name, with no records at them, passes", () => {
        assert.deepEqual(check(), []);
    });

    test("a wrong token is named as cloudflare:apiToken, with Cloudflare's own error and the fix", () => {
        const [problem, ...more] = check({ token: "W".repeat(40) });
        assert.deepEqual(more, []);
        assert.match(
            problem!,
            /^cloudflare:apiToken: Cloudflare refused the token .*10000 Authentication error.*Zone → DNS → Edit/,
        );
        assert.ok(!problem!.includes("W".repeat(40)), "the token is never in a message");
    });

    test("a token in the wrong format is named the same way (6003)", () => {
        assert.match(check({ token: "has spaces in it" })[0]!, /^cloudflare:apiToken: .*6003 Invalid request headers/);
    });

    test("an unknown zone is named as matrix:dns.zoneId", () => {
        const [problem] = check({ zoneId: "0".repeat(32) });
        assert.match(problem!, /^matrix:dns\.zoneId: Cloudflare has no zone 0{32} \(7003 Could not route/);
    });

    test("a zone that does not hold the names says which, and what Cloudflare would have made of them", () => {
        const [problem] = check({ names: ["matrix.example.net", "element.example.org"] });
        assert.match(
            problem!,
            /^matrix:dns\.zoneId: zone \S+ is example\.org, which does not hold matrix\.example\.net \(Cloudflare would create matrix\.example\.net\.example\.org\)/,
        );
    });

    test("a stranger's A, AAAA or CNAME at a name is refused, naming it; the stack's own records and other types are not", async () => {
        const old = (await post({ name: "matrix", type: "A", content: "198.51.100.7", ttl: 1 })).body.result;
        const v6 = (await post({ name: "element.example.org", type: "AAAA", content: "2001:db8::7", ttl: 1 })).body
            .result;
        await post({ name: "example.org", type: "TXT", content: "v=spf1 -all", ttl: 1 });
        await post({ name: "example.org", type: "A", content: "203.0.113.10", ttl: 1, comment: recordComment(OWNER) });
        const problems = check();
        assert.equal(problems.length, 2, problems.join("\n"));
        assert.match(
            problems[0]!,
            new RegExp(
                `^matrix:dns: matrix\\.example\\.org already has an A record \\(198\\.51\\.100\\.7, id ${old.id}\\)`,
            ),
        );
        assert.match(
            problems[1]!,
            new RegExp(`element\\.example\\.org already has an AAAA record \\(2001:db8::7, id ${v6.id}\\)`),
        );
        // Another stack's record is a stranger's too.
        await call("PATCH", `${records}/${old.id}`, { comment: recordComment("matrix/dev") });
        assert.equal(check().length, 2);
    });

    test("an API that does not answer is said so", () => {
        const [problem] = check({ base: "http://127.0.0.1:9/client/v4" });
        assert.match(problem!, /^matrix:dns: Cloudflare's API at http:\/\/127\.0\.0\.1:9\/client\/v4 did not answer/);
    });
});

describe("the lab's Cloudflare API refuses as Cloudflare does", () => {
    afterEach(clear);

    test("relative names are the zone's; an identical record is 81058; a CNAME beside an address is 81053; two addresses are round robin", async () => {
        const first = await post({ name: "matrix", type: "A", content: "203.0.113.10", ttl: 300, proxied: false });
        assert.equal(first.status, 200);
        assert.equal(first.body.result.name, "matrix.example.org");
        assert.equal(
            (await post({ name: "matrix.example.org", type: "A", content: "203.0.113.10", ttl: 1 })).body.errors[0]!
                .code,
            81058,
        );
        assert.equal(
            (await post({ name: "matrix.example.org", type: "CNAME", content: "example.org", ttl: 1 })).body.errors[0]!
                .code,
            81053,
        );
        assert.equal(
            (await post({ name: "matrix.example.org", type: "A", content: "203.0.113.11", ttl: 1 })).status,
            200,
        );
        assert.equal(
            (await post({ name: "x", type: "A", content: "not-an-address", ttl: 1 })).body.errors[0]!.code,
            9005,
        );
        assert.equal(
            (await post({ name: "x", type: "A", content: "203.0.113.12", ttl: 30 })).body.errors[0]!.code,
            9021,
        );
        const wrong = await post({ name: "y", type: "A", content: "203.0.113.12", ttl: 1 }, "W".repeat(40));
        assert.deepEqual([wrong.status, wrong.body.errors[0]!.code], [403, 10000]);
        assert.equal((await call("GET", records)).body.result.length, 2);
    });
});
