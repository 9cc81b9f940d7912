// npm run demo [-- down] (scripts/demo.sh installs what this needs, then runs it).
//
// The program's main job on this machine: a local Debian 12 host (systemd-nspawn, the e2e suites'
// host), a local CA (pebble) and DNS for it, and the real `pulumi up` of this program on a stack
// named `demo` (file backend under .cache/demo). The host keeps running afterwards; a second run
// changes nothing and says so; `down` destroys the stack and the host.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { hostAttach, hostDown } from "../lab/host";
import {
    ELEMENT_FIXTURE,
    NEW_SYNAPSE,
    publishDns,
    RELEASES,
    Server,
    serverNet,
    SLOTS,
    startSession,
    type Session,
} from "../lab/session";

const ROOT = path.resolve(__dirname, "..");
const DIR = path.resolve(process.env.DEMO_DIR ?? path.join(ROOT, ".cache/demo"));
const DOMAIN = "demo.test";
const started = Date.now();
const phase = (what: string) => console.log(`--- demo: ${what} (${((Date.now() - started) / 1000).toFixed(0)}s)`);

/** What the demo leaves for its user (and for the test that checks it): written to demo.json too. */
export interface DemoFacts {
    homeserverUrl: string;
    elementUrl: string;
    serverName: string;
    admin: { user: string; password: string };
    /** The CA to trust: the one that issued the certificates the host serves. */
    caFile: string;
    hostAddress: string;
    names: string[];
    sshKey: string;
    /** Whether this run's `pulumi up` changed nothing. */
    unchanged: boolean;
}

function fail(what: string, detail: string): never {
    console.error(`demo: ${what}\n${detail}`);
    process.exit(1);
}

async function up(): Promise<void> {
    phase("local host, CA and DNS");
    const session: Session = await startSession(DIR, SLOTS.demo, [{ name: "demo", domain: DOMAIN }], {
        keep: true,
        cli: { echo: true, usePath: true },
    });
    const server = session.servers[0]!;
    try {
        // A real Element release build where this machine has one (../shared/fixtures), else a
        // small stand-in page with the release layout.
        const element = existsSync(ELEMENT_FIXTURE) ? RELEASES.real.key : RELEASES.first.key;
        const settings = server.settings({
            synapse: { version: NEW_SYNAPSE },
            element: { ...session.artifacts.elements[element] },
            users: [{ name: "admin", admin: true }],
        });
        phase("pulumi preview (the DNS records the stack asks for go into the local DNS)");
        const preview = await server.preview(settings);
        if (preview.code !== 0) fail("pulumi preview failed", preview.errors);
        await publishDns(preview, session);
        phase("pulumi up");
        const run = await server.stack.text("up");
        if (run.code !== 0) fail("pulumi up failed", run.output.slice(-4000));
        const history = JSON.parse(
            (await server.stack.cli(["stack", "history", "--json", "--page-size", "1"], { check: true })).stdout,
        ) as { resourceChanges?: Record<string, number> }[];
        const changes = Object.entries(history[0]?.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && n > 0);
        const facts = await summarize(session, server, changes.length === 0);
        writeFileSync(path.join(DIR, "demo.json"), JSON.stringify(facts, null, 2), { mode: 0o600 });
        print(facts, changes);
    } finally {
        await session.artifacts.stop();
        session.acme.stop();
    }
}

async function summarize(session: Session, server: Server, unchanged: boolean): Promise<DemoFacts> {
    const outputs = await server.stack.outputs(true);
    // The CA file must verify what the host serves: pebble makes a new root at each start, so it
    // is the one of the run that issued the certificates (kept until they are issued again).
    const caFile = path.join(DIR, "ca.pem");
    const verifies = () =>
        existsSync(caFile) &&
        /Verify return code: 0 \(ok\)/.test(
            spawnSync(
                "openssl",
                ["s_client", "-connect", `${server.host.guestIp}:443`, "-servername", server.hs, "-CAfile", caFile],
                { input: "", encoding: "utf8" },
            ).stdout,
        );
    if (!verifies()) writeFileSync(caFile, session.acme.issuingRoot);
    return {
        homeserverUrl: String(outputs.homeserverUrl),
        elementUrl: String(outputs.elementUrl),
        serverName: String(outputs.serverName),
        admin: { user: "admin", password: (outputs.userPasswords as Record<string, string>).admin! },
        caFile,
        hostAddress: server.host.guestIp,
        names: [server.domain, server.hs, server.el],
        sshKey: server.host.keyPath,
        unchanged,
    };
}

function print(f: DemoFacts, changes: [string, number][]): void {
    console.log(
        [
            "",
            f.unchanged
                ? "The demo homeserver is up; pulumi up changed nothing."
                : `The demo homeserver is up (pulumi up: ${changes.map(([op, n]) => `${n} ${op}`).join(", ")}).`,
            `  Homeserver  ${f.homeserverUrl}   (server name ${f.serverName})`,
            `  Element     ${f.elementUrl}`,
            `  Admin       @${f.admin.user}:${f.serverName}   password ${f.admin.password}`,
            `              (kept in ${path.join(DIR, "demo.json")}, readable by root only)`,
            "",
            "To reach it from this machine:",
            `  1. add the names to /etc/hosts:  ${f.hostAddress} ${f.names.join(" ")}`,
            `  2. trust the demo CA ${f.caFile}:`,
            `     curl --cacert ${f.caFile} ${f.homeserverUrl}/_matrix/client/versions`,
            `     Chromium/Firefox: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n matrix-demo -i ${f.caFile}`,
            `  A shell on the host: ssh -i ${f.sshKey} root@${f.hostAddress}`,
            "",
            "Tear it down: npm run demo -- down",
        ].join("\n"),
    );
}

async function down(): Promise<void> {
    const net = serverNet(SLOTS.demo, "demo");
    const session = { run: DIR, servers: [] } as unknown as Session;
    const server = new Server(session, "demo", net, DOMAIN, "apex", { echo: true, usePath: true });
    const host = hostAttach(server.dir, net);
    if (host && existsSync(server.stack.backend)) {
        phase("pulumi destroy");
        server.host = host;
        const destroyed = await server.stack.cli(["destroy", "--yes", "--skip-preview"]);
        if (destroyed.code !== 0) fail("pulumi destroy failed", destroyed.stderr);
    }
    if (existsSync(server.stack.backend)) await server.stack.cli(["stack", "rm", "--yes", "--force"]);
    phase("the host");
    hostDown(server.dir, net);
    for (const f of ["demo.json", "ca.pem"]) rmSync(path.join(DIR, f), { force: true });
    console.log("The demo is down: the stack is destroyed and the host is stopped.");
}

const command = process.argv[2] ?? "up";
if (command !== "up" && command !== "down") fail("usage", "npm run demo [-- down]");
(command === "up" ? up() : down()).then(
    () => process.exit(0),
    (err: unknown) => fail("failed", err instanceof Error ? (err.stack ?? err.message) : String(err)),
);
