// `npm run demo` as a newcomer runs it: up (from whatever this machine has), a second time (it
// must change nothing and say the demo is up), a Matrix login with the admin account it printed,
// then `npm run demo -- down`, after which nothing of it runs. Needs root.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { Agent } from "undici";
import { hostLeftovers } from "../../lab/host";
import { serverNet, SLOTS, timed } from "../e2e/session";
import type { DemoFacts as Facts } from "../../scripts/demo";

const ROOT = path.resolve(__dirname, "../..");
// Where scripts/demo.ts keeps its stack, host and facts (DEMO_DIR as it reads it).
const DIR = path.resolve(process.env.DEMO_DIR ?? path.join(ROOT, ".cache/demo"));

/** Runs `npm run demo [-- args]` (its script), echoing its lines; resolves with everything it printed. */
function demo(...args: string[]): Promise<{ code: number; output: string }> {
    return new Promise((resolve) => {
        const child = spawn("bash", [path.join(ROOT, "scripts/demo.sh"), ...args], { cwd: ROOT, env: process.env });
        let output = "";
        const take = (d: Buffer) => {
            output += d.toString();
            process.stdout.write(
                d
                    .toString()
                    .split("\n")
                    .filter(Boolean)
                    .map((l) => `[demo] ${l}\n`)
                    .join(""),
            );
        };
        child.stdout.on("data", take);
        child.stderr.on("data", take);
        child.on("close", (code) => resolve({ code: code ?? 1, output }));
    });
}

describe("npm run demo", () => {
    let first: { code: number; output: string };
    let second: { code: number; output: string };
    let facts: Facts;
    let down: { code: number; output: string } | undefined;

    beforeAll(async () => {
        first = await timed("npm run demo (first)", () => demo());
        second = await timed("npm run demo (again)", () => demo());
        facts = JSON.parse(readFileSync(path.join(DIR, "demo.json"), "utf8")) as Facts;
    });
    afterAll(async () => {
        // Down even when a check failed: nothing of the demo may outlive the suite.
        down ??= await demo("down");
    });

    it("brings up a homeserver and says where it is and how to reach it", () => {
        assert.equal(first.code, 0, first.output.slice(-3000));
        assert.match(first.output, /--- demo: pulumi up \(\d+s\)/, "a line per phase with its elapsed time");
        assert.match(first.output, /Resources:\s+\+ \d+ created/, "Pulumi's own progress output");
        assert.match(first.output, /The demo homeserver is up/);
        assert.match(first.output, /Homeserver {2}https:\/\/matrix\.demo\.test/);
        assert.match(first.output, /Element {5}https:\/\/element\.demo\.test/);
        assert.match(first.output, /Admin {7}@admin:demo\.test {3}password \S{20,}/);
        assert.match(
            first.output,
            new RegExp(
                `${facts.hostAddress.replace(/\./g, "\\.")} demo\\.test matrix\\.demo\\.test element\\.demo\\.test`,
            ),
        );
        assert.ok(first.output.includes(facts.caFile));
    });

    it("changes nothing when run again, and says the demo is up", () => {
        assert.equal(second.code, 0, second.output.slice(-3000));
        assert.match(second.output, /The demo homeserver is up; pulumi up changed nothing\./);
        assert.equal(facts.unchanged, true);
    });

    it("lets a Matrix client log in as the admin it printed, trusting the CA file it named", async () => {
        const sdk = await import("matrix-js-sdk");
        const agent = new Agent({
            connect: {
                ca: readFileSync(facts.caFile, "utf8"),
                lookup: (_name, _opts, cb) => cb(null, [{ address: facts.hostAddress, family: 4 }]),
            },
        });
        const { fetch } = await import("undici");
        const fetchFn = ((input: string, init?: Parameters<typeof fetch>[1]) =>
            fetch(String(input), { ...init, dispatcher: agent })) as unknown as typeof globalThis.fetch;
        const client = sdk.createClient({ baseUrl: facts.homeserverUrl, fetchFn });
        const login = await client.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: facts.admin.user },
            password: facts.admin.password,
        });
        assert.equal(login.user_id, `@admin:${facts.serverName}`);
        const element = await fetch(`${facts.elementUrl}/config.json`, { dispatcher: agent });
        assert.equal(element.status, 200);
    });

    it("goes down with npm run demo -- down, leaving nothing running", async () => {
        down = await timed("npm run demo -- down", () => demo("down"));
        assert.equal(down.code, 0, down.output.slice(-3000));
        assert.match(down.output, /The demo is down/);
        assert.deepEqual(hostLeftovers(serverNet(SLOTS.demo, "demo")), []);
    });
});
