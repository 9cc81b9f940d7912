// `npm run self-check` (scripts/self-check.ts): its arguments, and the whole command against the
// local servers and a stub host.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterEach, beforeAll, describe, it } from "@jest/globals";
import { formatResult, parseStackOutputs, type SelfCheckReport } from "../../selfcheck";
import { parseSelfCheckArgs, selfCheckFromStack, type StackReader } from "../../scripts/self-check";
import { baseConfig } from "../harness/run";
import { HOST_FACTS } from "../harness/program";
import {
    behaviour,
    connectTo,
    dir,
    DOMAIN,
    EL,
    HS,
    localExec,
    MACHINE,
    pems,
    resolver,
    stubHost,
    useServers,
} from "./fixtures";

useServers();

describe("self-check: pure parts", () => {
    it("refuses outputs of a stack never deployed, and bad arguments", () => {
        assert.throws(() => parseStackOutputs({}), /run pulumi up first/);
        assert.throws(() => parseSelfCheckArgs(["--timeout", "0"]), /--timeout/);
        assert.throws(() => parseSelfCheckArgs(["--resolver", "dns.example"]), /--resolver/);
        assert.throws(() => parseSelfCheckArgs(["--no-system-ca"]), /needs --ca/);
        assert.throws(() => parseSelfCheckArgs(["--bogus"]), /usage: npm run self-check/);
        assert.throws(() => parseSelfCheckArgs(["--ca", "x.pem"], () => "not a pem"), /no PEM certificate/);
        const a = parseSelfCheckArgs(
            ["--stack", "prod", "--json", "--resolver", "127.0.0.1:5353", "--timeout", "3", "--ca", "ca.pem"],
            () => pems.root!,
        );
        assert.deepEqual(a, {
            stack: "prod",
            json: true,
            options: { timeoutMs: 3000, ca: pems.root, systemCa: true, resolver: "127.0.0.1:5353" },
        });
    });
});

describe("self-check: npm run self-check (the whole command, local servers and a stub host)", () => {
    const outputs = {
        serverName: DOMAIN,
        homeserverUrl: `https://${HS}`,
        elementUrl: `https://${EL}`,
        delegation: "apex",
    };
    const reader =
        (raw: Record<string, string>, out: unknown = outputs) =>
        (stack?: string): StackReader => {
            assert.equal(stack, "prod");
            return { config: () => raw, outputs: () => out };
        };
    const raw = () =>
        baseConfig({
            "matrix:domain": DOMAIN,
            "matrix:machine": MACHINE,
            "matrix:dns": undefined,
            "matrix:synapse": { maxUploadSize: "64K" },
            "matrix:database": { machine: { ipv4: "203.0.113.20" } },
        });
    let caFile: string;
    let exec: ReturnType<typeof localExec>;
    beforeAll(() => {
        caFile = path.join(dir, "trust.pem");
        writeFileSync(caFile, pems.root!);
        const stubs = path.join(dir, "cli-host");
        stubHost(stubs, { data: "/var/lib/postgresql/15/main", fakeDisks: true });
        exec = localExec({ PATH: `${stubs}:${process.env.PATH}` }, () => facts);
    });
    /** What the preflight reads on the stub host: a Debian 12 server, nginx on 80 and 443. */
    let facts = HOST_FACTS;
    afterEach(() => {
        facts = HOST_FACTS;
    });
    const argv = (...more: string[]) => [
        ...["--stack", "prod", "--resolver", resolver, "--ca", caFile, "--no-system-ca", "--timeout", "5"],
        ...more,
    ];
    const run = async (argvs: string[], r = reader(raw())) => {
        const lines: string[] = [];
        const result = await selfCheckFromStack(argvs, r, { connectTo: connectTo(), exec }, (l) => lines.push(l));
        return { ...result, lines };
    };

    it("prints one line per check in a fixed order, the summary last, and exits 0", async () => {
        const { exitCode, lines, results } = await run(argv());
        assert.deepEqual(results.filter((r) => r.status !== "pass").map(formatResult), []);
        assert.equal(exitCode, 0);
        assert.deepEqual(
            lines.map((l) => l.split(":")[0]),
            [
                "PASS stack",
                `PASS dns ${HS}`,
                `PASS dns ${EL}`,
                `PASS dns ${DOMAIN}`,
                `PASS tls ${HS}`,
                `PASS tls-legacy ${HS}`,
                `PASS tls ${EL}`,
                `PASS tls-legacy ${EL}`,
                `PASS tls ${DOMAIN}`,
                `PASS tls-legacy ${DOMAIN}`,
                "PASS well-known server",
                "PASS well-known client",
                "PASS federation keys",
                "PASS federation version",
                "PASS client versions",
                "PASS client registration",
                "PASS client upload",
                "PASS element config",
                "PASS element headers",
                "PASS element cache",
                "PASS ssh root@203.0.113.10",
                "PASS unit matrix-synapse",
                "PASS unit nginx",
                "PASS unit matrix-synapse-backup.timer",
                "PASS unit matrix-pulumi-firewall",
                "PASS disk /var/lib/matrix-synapse",
                "PASS backup",
                "PASS synapse version",
                "PASS preflight",
                "PASS ssh root@203.0.113.20",
                "PASS unit postgresql (database host)",
                "PASS unit matrix-pulumi-firewall (database host)",
                "PASS postgresql cluster (database host)",
                "PASS disk /var/lib/postgresql/15/main (database host)",
                "PASS preflight (database host)",
                `${results.length} passed, 0 warnings, 0 failed`,
            ],
        );
    });

    it("exits 1 when a check fails, the failing line naming the fix", async () => {
        behaviour.registrationOpen = true;
        const { exitCode, lines } = await run(argv());
        assert.equal(exitCode, 1);
        const line = lines.find((l) => l.startsWith("FAIL client registration"));
        assert.equal(
            line,
            "FAIL client registration: open, but matrix:synapse.enableRegistration says closed — fix: run pulumi up (homeserver.yaml enable_registration); check matrix:synapse.extraConfig",
        );
        assert.match(lines[lines.length - 1]!, /^\d+ passed, 0 warnings, 1 failed$/);
    });

    it("runs the deploy's preflight on each host: what would stop the next pulumi up fails, with its fix", async () => {
        facts = `${HOST_FACTS}listen\t80 apache2\nfirewall\tufw\n`;
        const { exitCode, lines } = await run(argv());
        assert.equal(exitCode, 1);
        assert.deepEqual(
            lines.filter((l) => l.startsWith("FAIL preflight")),
            [
                "FAIL preflight: matrix:machine: ufw is active, and matrix:firewall.enabled has the program manage the firewall (nftables) too — fix: `ufw disable`, or set matrix:firewall.enabled to false and open 80 and 443 (and SSH) in ufw",
                "FAIL preflight: matrix:machine: port 80 is held by apache2, not nginx; the program serves ACME and Matrix there — fix: stop and disable apache2 (or move it to another port)",
                "FAIL preflight (database host): matrix:database.machine: ufw is active, and matrix:firewall.enabled has the program manage the firewall (nftables) too — fix: `ufw disable`, or set matrix:firewall.enabled to false and open 80 and 443 (and SSH) in ufw",
            ],
        );
    });

    it("prints one JSON document with --json", async () => {
        const { lines, results } = await run(argv("--json"));
        assert.equal(lines.length, 1);
        const doc = JSON.parse(lines[0]!) as SelfCheckReport;
        assert.deepEqual(doc.results, results);
        assert.deepEqual(doc.summary, { passed: results.length, warnings: 0, failed: 0 });
    });

    it("exits 2 for a stack never deployed, or bad arguments", async () => {
        const never = await run(argv(), reader(raw(), {}));
        assert.equal(never.exitCode, 2);
        assert.match(never.lines[0]!, /run pulumi up first/);
        const bad = await run(["--stack", "prod", "--timeout", "soon"]);
        assert.equal(bad.exitCode, 2);
        assert.match(bad.lines[0]!, /--timeout/);
    });
});
