// Hardening on a real host (the e2e session: systemd-nspawn, pebble, the real Pulumi CLI):
// connections cut in the middle of steps, a reboot and a killed Synapse; every channel a secret
// could leak through, scanned; testssl.sh against the deployed nginx; the firewall from outside;
// the Synapse unit's sandbox. Needs root; run by `npm run test:hardening`.
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import type { Run } from "../../lab/pulumi";
import { hostReboot, sshTo } from "../../lab/host";
import {
    CACHE,
    ctx,
    deploy,
    DOMAIN,
    EL,
    preview,
    publishDns,
    explainFailure,
    get,
    HS,
    lastMessages,
    matrixClient,
    NEW_SYNAPSE,
    seesMessage,
    servedSynapseVersion,
    sh,
    stackConfig,
    startSession,
    SLOTS,
    stopSession,
    target,
    timed,
    type StackSettings,
} from "../e2e/session";
import { hostChecks, httpChecks } from "../e2e/checks";
import { registerUser } from "../../lib/registerUser";
import { hostPackages } from "../../render/packages";
import { shq } from "../../render/shell";
import { sshExec, type SshConnection } from "../../lib/ssh";
import { recordFigure } from "./figures";
import { preflight, readFactsOverSsh, setFactsReader, type PreflightSettings } from "../../lib/preflight";

const RUN = path.join(CACHE, "run-hardening");
/** The stack: purgeOnDestroy, so a destroy gives the next deploy real work to do again. */
const config = (synapse: Record<string, unknown> = {}): StackSettings => stackConfig({ purgeOnDestroy: true, synapse });
const faults: { name: string; converged: boolean }[] = [];
const results: Run[] = [];
const hygiene = { leaked: -1 };
const tls = { high: -1 };

/** Deploy and keep the result for the secret scan. */
async function run(settings: StackSettings): Promise<Run> {
    const r = await deploy(settings);
    results.push(r);
    return r;
}

/**
 * On the host: wait until a process whose command line matches `pattern` (an anchored ERE) has
 * run for `delaySeconds`, then kill the step that started it where it stands — its whole process
 * tree — and the SSH session it came through: the connection is cut in the middle of the step.
 * Resolves with what was cut, or "missed" if the step never got there.
 */
function cutWhen(
    pattern: string,
    delaySeconds: number,
    around: { hold?: string; release?: string } = {},
): { stop(): Promise<string> } {
    const tag = `cut-watcher-${randomBytes(4).toString("hex")}`;
    const watcher = `
set -u
pattern=$1; delay=$2
${around.hold ?? ""}
desc() { local c; for c in $(pgrep -P "$1"); do desc "$c"; echo "$c"; done; }
for _ in $(seq 1 18000); do
  pid=$(pgrep -o -f -- "$pattern" || true)
  if [ -n "$pid" ]; then
    sleep "$delay"
    kill -0 "$pid" 2>/dev/null || { echo "finished before the cut"; exit 1; }
    step=$pid
    while :; do
      parent=$(ps -o ppid= -p "$step" | tr -d ' ')
      [ -n "$parent" ] && [ "$parent" -gt 1 ] || { echo "no SSH session above $pid"; exit 1; }
      [ "$(ps -o comm= -p "$parent")" = sshd ] && break
      step=$parent
    done
    what=$(tr '\\0' ' ' < "/proc/$pid/cmdline" | cut -c1-100)
    kill -KILL $(desc "$step") "$step" "$parent" 2>/dev/null
    ${around.release ?? ""}
    echo "cut: $what"; exit 0
  fi
  sleep 0.02
done
echo missed; exit 1`;
    const child = spawn("ssh", [
        ...sshTo(ctx.host),
        "--",
        "bash",
        "-c",
        shq(watcher),
        tag,
        shq(pattern),
        String(delaySeconds),
    ]);
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const done = new Promise<string>((resolve) => child.on("close", () => resolve(out.trim() || "missed")));
    return {
        // The loop on the host outlives its SSH client: end it there.
        stop: async () => {
            sh(`pkill -f '[${tag[0]}]${tag.slice(1)}'; ${around.release ?? ""} true`);
            return done;
        },
    };
}

const HOLD_PG_DATABASE = {
    hold: `runuser -u postgres -- psql -X -q -c 'BEGIN; LOCK TABLE pg_catalog.pg_database IN SHARE MODE; SELECT pg_sleep(60);' >/dev/null 2>&1 &`,
    release: `runuser -u postgres -- psql -X -qAt -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null`,
};

/** Samples every process's arguments, on the host and on this machine, every 100 ms. */
function sampleProcesses(): { stop(): Promise<string> } {
    const seen = new Set<string>();
    const remote = spawn("ssh", [...sshTo(ctx.host), "--", "while :; do ps -eww -o args=; sleep 0.1; done"]);
    remote.stdout.on("data", (d: Buffer) =>
        d
            .toString()
            .split("\n")
            .forEach((l) => seen.add(l)),
    );
    const local = setInterval(() => {
        execFile("ps", ["-eww", "-o", "args="], { maxBuffer: 16 * 1024 * 1024 }, (_e, stdout) =>
            stdout.split("\n").forEach((l) => seen.add(l)),
        );
    }, 100);
    return {
        stop: async () => {
            clearInterval(local);
            remote.kill();
            await new Promise((r) => setTimeout(r, 200));
            return [...seen].join("\n");
        },
    };
}

/** Which of `secrets` occur in `text` (a hit names the channel and the secret's label). */
function hits(channel: string, text: string, secrets: Map<string, string>): string[] {
    return [...secrets].filter(([, value]) => text.includes(value)).map(([label]) => `${channel}: ${label}`);
}

/** World-readable files on the host holding any secret (patterns go over stdin into a 0600 file). */
function worldReadableHits(secrets: Map<string, string>): string[] {
    const patterns = [...secrets.values()].join("\n") + "\n";
    const r = sh(
        `umask 077; f=$(mktemp /root/.scan.XXXXXX); cat > "$f"; ` +
            `find / /tmp /var/tmp /run /dev/shm -xdev -type f -perm -o=r -print0 2>/dev/null | sort -zu | xargs -0 -r grep -l -F -f "$f" -- 2>/dev/null; rm -f "$f"; true`,
        patterns,
    );
    return r.stdout
        .split("\n")
        .filter(Boolean)
        .flatMap((file) => {
            const content = sh(`cat -- ${shq(file)}`).stdout;
            return hits(`world-readable ${file}`, content, secrets);
        });
}

describe("hardening on a real host", () => {
    const password = randomBytes(12).toString("hex");
    let roomId: string;
    const message = `hardening ${Date.now()}`;
    let secret: string;
    let processSamples: string;

    beforeAll(async () => {
        // The Debian packages come with the host: what is hardened here is the program's own steps
        // (the e2e suite deploys onto a bare host, apt and all).
        await startSession(RUN, SLOTS.hardening, [
            { name: "hardening", domain: DOMAIN, packages: hostPackages({ firewall: true }) },
        ]);
    });
    afterAll(async () => {
        const converged = faults.filter((f) => f.converged).length;
        recordFigure("faults", { converged, total: faults.length });
        if (hygiene.leaked >= 0) recordFigure("secrets", { leaked: hygiene.leaked });
        if (tls.high >= 0) recordFigure("testssl", { high: tls.high });
        console.log(
            `faults: ${faults.map((f) => `${f.name} ${f.converged ? "converged" : "NOT converged"}`).join("; ")}`,
        );
        await stopSession();
    });

    describe("connections cut in the middle of the Synapse install, database and certificate steps", () => {
        // Each cut comes on a host where that step does real work: the cold deploy (pip), then
        // after a purging destroy (CREATE DATABASE, then a new certificate from pebble).
        const plan: [step: string, pattern: string, delaySeconds: number][] = [
            ["synapse-install", "^/opt/synapse/bin/python -m pip install", 1],
            ["postgres-database", "^(/usr/lib/postgresql/[0-9]+/bin/)?psql -X -q -v ON_ERROR_STOP=1", 0.5],
            ["nginx-certificate-homeserver", `^/usr/bin/python3 /usr/bin/certbot certonly .*--cert-name ${HS}`, 0.3],
        ];
        const rounds: { step: string; cut: string; faulty: Run; converge: Run }[] = [];
        beforeAll(async () => {
            const sampler = sampleProcesses();
            // The records the stack asks for, in the test DNS before the first up.
            const p = await timed("preview (cold)", () => preview(config()));
            assert.equal(p.code, 0, explainFailure(p));
            await publishDns(p);
            for (const [i, [step, pattern, delay]] of plan.entries()) {
                if (i > 0) {
                    const destroyed = await timed("destroy (purge)", () => ctx.stack.destroy());
                    results.push(destroyed);
                    assert.equal(destroyed.code, 0, explainFailure(destroyed));
                }
                // psql is over in a blink; a session holding a SHARE lock on pg_database makes its
                // CREATE DATABASE wait, so the cut lands after the role, before the database.
                const watcher = cutWhen(pattern, delay, step === "postgres-database" ? HOLD_PG_DATABASE : {});
                const faulty = await timed(`deploy (cut in ${step})`, () => run(config()));
                const cut = await watcher.stop();
                const converge = await timed(`deploy (re-apply after the cut)`, () => run(config()));
                rounds.push({ step, cut, faulty, converge });
                const wasCut = /^cut: /.test(cut) && faulty.steps.some((x) => x.name === step && x.failed);
                faults.push({ name: `cut in ${step}`, converged: wasCut && converge.code === 0 });
                console.log(`cut in ${step}: ${cut}; re-apply ${converge.code === 0 ? "converged" : "failed"}`);
                assert.equal(converge.code, 0, explainFailure(converge));
            }
            processSamples = await sampler.stop();
            secret = String((await ctx.stack.outputs(true)).registrationSharedSecret);
        });
        it("cut each step in the middle, and the deploy failed at that step", () => {
            for (const r of rounds) {
                assert.match(r.cut, /^cut: /, `${r.step}: ${r.cut}`);
                assert.ok(
                    r.faulty.steps.some((x) => x.name === r.step && x.failed),
                    r.step,
                );
                assert.notEqual(r.faulty.code, 0);
            }
            assert.equal(rounds.length, 3);
        });
        it("converged on each next apply, running the cut step again", () => {
            for (const r of rounds) {
                const ran = r.converge.changed;
                assert.ok(ran.includes(r.step), `${r.step} ran again`);
            }
        });
        httpChecks();
        hostChecks();
        it("serves a real client: register, room, message", async () => {
            await registerUser(target(), secret, { name: "alice", password, admin: false });
            const mx = await matrixClient("alice", password);
            roomId = (await mx.createRoom({ name: "hardening" })).room_id;
            await mx.sendTextMessage(roomId, message);
            assert.ok((await lastMessages(mx, roomId)).includes(message));
        });
    });

    describe("secret hygiene: every secret's plaintext, in every channel", () => {
        let secrets: Map<string, string>;
        const found: string[] = [];
        let debugHits: string[];
        beforeAll(async () => {
            const state = await ctx.stack.resources();
            secrets = new Map(
                state
                    .filter((r) => r.type === "random:index/randomPassword:RandomPassword")
                    .map((r) => [r.name, String(r.outputs.result)]),
            );
            // A line from the end of the key: the private part (the first line is a header every
            // OpenSSH key shares).
            const keyLines = ctx.host.privateKey.split("\n").filter((l) => l.length >= 60);
            secrets.set("ssh private key", keyLines[keyLines.length - 1]!.slice(0, 40));
            const journal = sh("journalctl -o cat --no-pager").stdout;
            // What a user reads: the plain output of a preview with diffs and of an up.
            const plainRuns = [await ctx.stack.text("preview", ["--diff"]), await ctx.stack.text("up", ["--diff"])];
            found.push(
                ...hits("pulumi preview --diff / up --diff output", plainRuns.map((r) => r.output).join("\n"), secrets),
                ...hits("command output", results.map((r) => r.output).join("\n"), secrets),
                ...hits("state file", readFileSync(ctx.stack.stateFile, "utf8"), secrets),
                ...hits("pulumi stack export", await ctx.stack.export(), secrets),
                ...hits("process arguments", processSamples, secrets),
                ...hits("host journal", journal, secrets),
                ...worldReadableHits(secrets),
            );
            debugHits = hits("SDK debug diagnostics in --json", results.map((r) => r.debugOutput).join("\n"), secrets);
            console.log(
                `secret scan: ${debugHits.length} secrets in the Node.js SDK's debug diagnostics of --json runs (known, docs/configuration.md: Secrets); ${secrets.size} secrets; ${processSamples.split("\n").length} distinct process lines, ` +
                    `${journal.split("\n").length} journal lines, ${results.length} deploys' outputs: ${found.length} hits`,
            );
        });
        it("scans the generated secrets and the SSH key", () => {
            assert.deepEqual([...secrets.keys()].sort(), [
                "postgres-password",
                "ssh private key",
                "synapse-form-secret",
                "synapse-macaroon-secret-key",
                "synapse-registration-shared-secret",
            ]);
            for (const v of secrets.values()) assert.ok(v.length >= 40);
        });
        it("finds none of them in the CLI's output, the state, process arguments, journal or world-readable files", () => {
            assert.deepEqual(found, []);
        });
        it("finds the generated ones only in the SDK's debug diagnostics of --json runs, as docs/configuration.md: Secrets says", () => {
            // Pulumi's Node.js SDK logs each RegisterResource response at debug level, and --json
            // streams debug diagnostics: the random provider's results appear there. This pins
            // that down, so a change (for better or worse) shows.
            assert.ok(
                debugHits.every((h) => !h.includes("ssh private key")),
                debugHits.join(", "),
            );
        });
        it("finds a secret planted in each channel (the scanner works)", async () => {
            const planted = secrets.get("synapse-form-secret")!;
            const plant = new Map([["planted", planted]]);
            // Command output and state: the scan's own inputs with the secret added.
            assert.equal(hits("command output", `ok\n${planted}\n`, plant).length, 1);
            const state = readFileSync(ctx.stack.stateFile, "utf8");
            const tampered = state.replace('"type":', `"leak": "${planted}", "type":`);
            assert.equal(hits("state file", tampered, plant).length, 1);
            // Process arguments: a process on the host whose argv carries it (sent on stdin).
            const sampler = sampleProcesses();
            sh(`read -r s; (exec -a "planted $s" sleep 2) ; true`, `${planted}\n`);
            assert.equal(hits("process arguments", await sampler.stop(), plant).length, 1);
            // Journal and a world-readable file.
            sh("systemd-cat -t planted", `${planted}\n`);
            await new Promise((r) => setTimeout(r, 500));
            assert.equal(hits("host journal", sh("journalctl -o cat --no-pager").stdout, plant).length, 1);
            sh("cat > /var/tmp/planted && chmod 0644 /var/tmp/planted", `${planted}\n`);
            assert.deepEqual(worldReadableHits(plant), ["world-readable /var/tmp/planted: planted"]);
            sh("rm -f /var/tmp/planted");
            // The figure counts only once the scanner is shown to find what it looks for.
            hygiene.leaked = found.length;
        });
    });

    describe("a connection cut in the middle of an upgrade (pip install)", () => {
        let cut: string;
        let faulty: Run;
        let converge: Run;
        beforeAll(async () => {
            const w = cutWhen("^/opt/synapse/bin/python -m pip install", 2);
            const upgraded = config({ version: NEW_SYNAPSE });
            faulty = await timed("deploy (upgrade, cut in pip)", () => run(upgraded));
            cut = await w.stop();
            converge = await timed("deploy (re-apply upgrade)", () => run(upgraded));
            const wasCut = /^cut: /.test(cut) && faulty.steps.some((x) => x.name === "synapse-install" && x.failed);
            faults.push({ name: "cut in the upgrade", converged: wasCut && converge.code === 0 });
            assert.equal(converge.code, 0, explainFailure(converge));
        });
        it("cut pip mid-install and failed the install step", () => {
            assert.match(cut, /^cut: /, cut);
            assert.ok(faulty.steps.some((s) => s.name === "synapse-install" && s.failed));
        });
        it("finished the upgrade on the next apply: the new release answers", async () => {
            assert.equal(await servedSynapseVersion(), NEW_SYNAPSE);
        });
        it("lost nothing: the user logs in and the message is there", async () => {
            assert.ok(await seesMessage("alice", password, roomId, message));
        });
    });

    describe("the host powered off and booted again (no deploy)", () => {
        let healthyAfter: number;
        beforeAll(async () => {
            const start = Date.now();
            await timed("reboot host", () => hostReboot(ctx.server.dir, ctx.server.net));
            for (;;) {
                const ok = await get(`https://${HS}/_matrix/client/versions`).then(
                    (r) => r.status === 200,
                    () => false,
                );
                if (ok || Date.now() - start > 180_000) break;
                await new Promise((r) => setTimeout(r, 500));
            }
            healthyAfter = (Date.now() - start) / 1000;
            console.log(`reboot: Matrix answered through nginx ${healthyAfter.toFixed(1)} s after power-off`);
        });
        it("brings every service back enabled and active", () => {
            const units = "matrix-synapse nginx postgresql@15-main matrix-pulumi-firewall matrix-synapse-backup.timer";
            const active = sh(`systemctl is-active ${units}`).stdout.trim().split("\n");
            faults.push({ name: "reboot", converged: active.every((a) => a === "active") && healthyAfter < 180 });
            assert.deepEqual(active, ["active", "active", "active", "active", "active"]);
            assert.match(sh("nft list chain inet matrix_pulumi input").stdout, /policy drop/);
        });
        httpChecks();
        it("lost nothing: the user logs in and the message is there", async () => {
            assert.ok(await seesMessage("alice", password, roomId, message));
        });
    });

    describe("Synapse killed", () => {
        it("is restarted by systemd and answers again", async () => {
            const before = sh("systemctl show -p MainPID --value matrix-synapse").stdout.trim();
            const start = Date.now();
            sh("systemctl kill -s KILL matrix-synapse");
            let back = false;
            while (Date.now() - start < 60_000) {
                const pid = sh("systemctl show -p MainPID --value matrix-synapse").stdout.trim();
                const health = sh("curl -fsS --max-time 2 http://127.0.0.1:8008/health").stdout.trim();
                if (pid !== "0" && pid !== before && health === "OK") {
                    back = true;
                    break;
                }
                await new Promise((r) => setTimeout(r, 200));
            }
            console.log(`kill -9: Synapse healthy again after ${((Date.now() - start) / 1000).toFixed(1)} s`);
            faults.push({ name: "Synapse killed", converged: back });
            assert.ok(back, "Synapse came back");
            assert.ok(await seesMessage("alice", password, roomId, message));
        });
    });

    describe("SSH: the program's commands share one connection (lib/ssh.ts sshExec)", () => {
        const connection = (): SshConnection => ({
            host: ctx.host.guestIp,
            user: "root",
            privateKey: ctx.host.privateKey,
            hostKey: ctx.host.hostKey,
        });
        /**
         * `n` commands at once, each reading its number on stdin, then taking 0.3 s (so that they
         * overlap), naming its sshd and exiting with its number mod 3.
         */
        const burst = (c: SshConnection, n: number) =>
            Promise.all(
                Array.from({ length: n }, async (_, i) => {
                    const r = await sshExec(c, 'read -r n; sleep 0.3; echo "$n $PPID"; exit $((n % 3))', `${i}\n`);
                    const [echoed, sshd] = r.stdout.trim().split(" ");
                    return { i, code: r.code, echoed: Number(echoed), sshd, stderr: r.stderr };
                }),
            );
        const wrong = (runs: Awaited<ReturnType<typeof burst>>) =>
            runs.filter((r) => r.echoed !== r.i || r.code !== r.i % 3);

        it("runs 24 commands at once, each with its own stdin and exit status, over one connection", async () => {
            const runs = await burst(connection(), 24);
            assert.deepEqual(wrong(runs), []);
            // Each session's shell is a child of its connection's sshd.
            assert.equal(new Set(runs.map((r) => r.sshd)).size, 1, runs.map((r) => r.sshd).join(" "));
        });

        it("still runs them all where sshd allows one session a connection (MaxSessions 1)", async () => {
            sh("echo 'MaxSessions 1' > /etc/ssh/sshd_config.d/zz-test.conf && systemctl reload ssh");
            try {
                // Another connection than the test's above (no pinned host key): one made under MaxSessions 1.
                const runs = await burst({ ...connection(), hostKey: undefined }, 8);
                assert.deepEqual(wrong(runs), []);
                assert.ok(new Set(runs.map((r) => r.sshd)).size > 1, "sshd refused the shared connection's sessions");
            } finally {
                sh("rm -f /etc/ssh/sshd_config.d/zz-test.conf && systemctl reload ssh");
            }
        });
    });

    describe("TLS and exposure", () => {
        it("testssl.sh finds no HIGH or CRITICAL issue; TLS 1.2+ only; HSTS set", async () => {
            const dir = path.join(ctx.run, "testssl");
            spawnSync("mkdir", ["-p", dir]);
            const ca = path.join(dir, "pebble-root.pem");
            writeFileSync(ca, ctx.acme.issuingRoot);
            const json = path.join(dir, "result.json");
            const r = await timed("testssl.sh", () =>
                spawnSync(
                    "testssl",
                    [
                        "--quiet",
                        "--color",
                        "0",
                        "--warnings",
                        "off",
                        "--add-ca",
                        ca,
                        "--ip",
                        ctx.host.guestIp,
                        // Every check but the client simulations (-c: which TLS a list of old
                        // browsers would get, INFO only, never a finding; a third of the time).
                        "--protocols",
                        "--std",
                        "--fs",
                        "--server-preference",
                        "--server-defaults",
                        "--headers",
                        "--vulnerable",
                        "--jsonfile",
                        json,
                        `https://${HS}/`,
                    ],
                    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, REQUESTS_CA_BUNDLE: "" } },
                ),
            );
            assert.ok(r.status !== null, r.stderr);
            const findings = JSON.parse(readFileSync(json, "utf8")) as {
                id: string;
                severity: string;
                finding: string;
            }[];
            const high = findings.filter((f) => f.severity === "HIGH" || f.severity === "CRITICAL");
            const by = (id: string) => findings.find((f) => f.id === id)?.finding ?? "";
            console.log(
                `testssl: ${findings.length} findings; ${high.length} HIGH/CRITICAL` +
                    high.map((f) => `\n  ${f.severity} ${f.id}: ${f.finding}`).join(""),
            );
            for (const p of ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]) assert.match(by(p), /not offered/, p);
            assert.match(by("TLS1_2"), /offered/);
            assert.match(by("HSTS_time"), /\d+ days/);
            // The figure counts only for a scan that reached the server.
            tls.high = high.length;
            assert.deepEqual(high, []);
        });

        it("lets in SSH, 80 and 443 from outside and drops any other port", async () => {
            sh("systemd-run --unit=probe-8010 python3 -m http.server 8010 --bind 0.0.0.0 >/dev/null 2>&1; sleep 1");
            const connect = (port: number) =>
                new Promise<string>((resolve) => {
                    const s = net.connect({ host: ctx.host.guestIp, port, timeout: 3000 });
                    s.on("connect", () => (s.destroy(), resolve("open")));
                    s.on("timeout", () => (s.destroy(), resolve("dropped")));
                    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
                });
            const seen = Object.fromEntries(
                await Promise.all([22, 80, 443, 8010, 8008, 5432].map(async (p) => [p, await connect(p)])),
            );
            const inside = sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8010/").stdout;
            sh("systemctl stop probe-8010");
            assert.deepEqual(seen, {
                22: "open",
                80: "open",
                443: "open",
                8010: "dropped",
                8008: "dropped",
                5432: "dropped",
            });
            assert.equal(inside, "200", "the probe answers on the host itself");
        });

        it("runs Synapse in a sandbox: read-only system, private /tmp, only its data writable, exposure ≤ 2", () => {
            const props = sh(
                "systemctl show matrix-synapse -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ProtectHome -p ReadWritePaths",
            ).stdout;
            assert.match(props, /NoNewPrivileges=yes/);
            assert.match(props, /ProtectSystem=strict/);
            assert.match(props, /PrivateTmp=yes/);
            assert.match(props, /ReadWritePaths=\/var\/lib\/matrix-synapse/);
            const pid = sh("systemctl show -p MainPID --value matrix-synapse").stdout.trim();
            const inNs = (cmd: string) => sh(`nsenter -t ${pid} -m -- sh -c ${shq(cmd)} 2>&1; echo "rc=$?"`).stdout;
            assert.match(inNs("touch /etc/matrix-synapse/probe"), /Read-only file system[\s\S]*rc=1/);
            assert.match(inNs("touch /opt/synapse/probe"), /Read-only file system[\s\S]*rc=1/);
            assert.match(inNs("touch /var/lib/matrix-synapse/probe && rm /var/lib/matrix-synapse/probe"), /rc=0/);
            sh("touch /tmp/host-probe");
            assert.match(inNs("test -e /tmp/host-probe"), /rc=1/);
            const score = sh(
                "systemd-analyze security matrix-synapse --no-pager 2>/dev/null | tail -n 1",
            ).stdout.trim();
            console.log(`systemd-analyze security matrix-synapse: ${score}`);
            // systemd rates exposure from 0 (locked down) to 10; the unit measured 1.4 ("OK").
            assert.ok(Number(/level for matrix-synapse\.service: ([0-9.]+)/.exec(score)?.[1] ?? 99) <= 2, score);
        });
    });
    describe("the preflight on the deployed host, each refusal planted", () => {
        const connection = () => ({
            host: ctx.host.guestIp,
            user: "root",
            privateKey: ctx.host.privateKey,
            hostKey: ctx.host.hostKey,
        });
        const settings: PreflightSettings = {
            key: "matrix:machine",
            web: { names: [HS, EL, DOMAIN] },
            firewall: true,
            postgres: { database: "synapse" },
        };
        /** The real script over SSH, run after `plant` in the same shell, or under `wrap`. */
        const readWith = (plant: string, wrap = "") =>
            setFactsReader((c, script) => readFactsOverSsh(c, `${wrap} bash -c ${shq(`${plant}\n${script}`)}`));
        const check = (s: Partial<PreflightSettings> = {}) => preflight(connection(), { ...settings, ...s });
        afterAll(() => setFactsReader(readFactsOverSsh));

        it("passes the host as deployed, and reads its cluster: 15/main on 5432", () => {
            readWith("");
            const r = check();
            assert.deepEqual(r.problems, []);
            assert.deepEqual(r.cluster, { version: "15", name: "main", port: 5432 });
        });

        it("refuses another release (os-release as Debian 11 has it), naming it", () => {
            readWith(
                'printf \'ID=debian\\nVERSION_ID="11"\\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\\n\' > /run/plant-os-release && mount --bind /run/plant-os-release /usr/lib/os-release',
                "unshare --mount",
            );
            assert.match(
                check().problems.join("\n"),
                /matrix:machine: the host runs Debian GNU\/Linux 11 \(bullseye\) \(debian 11\); the program supports Debian 12 \(bookworm\) and Debian 13 \(trixie\)/,
            );
        });

        it("refuses a host whose process 1 is not systemd (a PID namespace of its own, as a bare container)", () => {
            readWith("", "unshare --pid --fork --mount-proc");
            assert.match(check().problems.join("\n"), /matrix:machine: process 1 is bash, not systemd/);
        });

        it("refuses too little disk under /var/lib and too little memory", () => {
            readWith(
                "mount -t tmpfs -o size=64m tmpfs /var/lib && printf 'MemTotal:  524288 kB\\n' > /run/plant-meminfo && mount --bind /run/plant-meminfo /proc/meminfo",
                "unshare --mount",
            );
            const lines = check({ postgres: undefined }).problems;
            assert.ok(
                lines.includes(
                    "matrix:machine: 64 MiB free for /var/lib; Synapse, PostgreSQL and their backups need at least 4.0 GiB: free space or grow the disk",
                ),
                lines.join("\n"),
            );
            assert.ok(
                lines.includes(
                    "matrix:machine: 512 MiB of memory; Synapse and PostgreSQL need at least 1 GiB: use a larger server",
                ),
                lines.join("\n"),
            );
        });

        it("waits for apt's lock: passes once it is released, refuses naming the holder when it is not", () => {
            readWith("");
            sh("systemd-run -q --unit=plant-apt-lock flock /var/lib/dpkg/lock-frontend sleep 4");
            const waited = check({ aptLockWaitSeconds: 60 });
            assert.deepEqual(waited.problems, []);
            sh("systemd-run -q --unit=plant-apt-lock2 flock /var/lib/dpkg/lock-frontend sleep 120");
            try {
                assert.match(
                    check({ aptLockWaitSeconds: 3 }).problems.join("\n"),
                    /apt's lock is held by (flock|sleep) \(pid \d+\) and was not released within 3 s/,
                );
            } finally {
                sh("systemctl stop plant-apt-lock2");
            }
        });

        it("refuses ufw enabled and firewalld active beside the managed firewall", () => {
            readWith("");
            sh(
                "mkdir -p /etc/ufw && printf 'ENABLED=yes\\n' > /etc/ufw/ufw.conf && systemd-run -q --unit=firewalld sleep 300",
            );
            try {
                const lines = check().problems.join("\n");
                assert.match(lines, /ufw is active.*`ufw disable`/);
                assert.match(lines, /firewalld is active.*`systemctl disable --now firewalld`/);
                assert.deepEqual(check({ firewall: false }).problems, []);
            } finally {
                sh("rm -rf /etc/ufw; systemctl stop firewalld");
            }
        });

        it("refuses port 80 held by another server, and an nginx site of someone else's with one of our names", () => {
            readWith("");
            sh(
                `systemctl stop nginx && systemd-run -q --unit=plant-http python3 -m http.server 80 && printf 'server { listen 80; server_name old.example ${HS}; }\\n' > /etc/nginx/sites-enabled/old-matrix`,
            );
            try {
                for (let i = 0; i < 50 && !sh("ss -Htln 'sport = :80'").stdout.trim(); i++) spawnSync("sleep", ["0.2"]);
                assert.deepEqual(check().problems, [
                    "matrix:machine: port 80 is held by python3, not nginx; the program serves ACME and Matrix there: stop and disable python3 (or move it to another port)",
                    `matrix:machine: the nginx site /etc/nginx/sites-enabled/old-matrix claims ${HS}, which the program serves: remove that server_name (or the site) so the two do not answer for one name`,
                ]);
            } finally {
                sh("systemctl stop plant-http; rm -f /etc/nginx/sites-enabled/old-matrix; systemctl start nginx");
            }
        });

        it("refuses when Synapse's database is in another cluster than the one the program uses", () => {
            readWith("");
            sh(
                "pg_createcluster 15 legacy --port 5439 --start >/dev/null && runuser -u postgres -- psql --cluster 15/legacy -qc 'CREATE DATABASE elsewhere'",
            );
            try {
                assert.deepEqual(check({ postgres: { database: "elsewhere" } }).problems, [
                    "matrix:postgres.database: the database elsewhere is in PostgreSQL cluster 15/legacy (port 5439), but on Debian 12 (bookworm) the program uses cluster 15/main; move it there first: `pg_dropcluster 15 main --stop` (if it holds nothing of yours), then `pg_renamecluster 15 legacy main`, then run again",
                ]);
            } finally {
                sh("pg_dropcluster 15 legacy --stop");
            }
        });

        it("refuses a backup schedule the host's systemd cannot parse, and takes one it can", () => {
            readWith("");
            assert.deepEqual(check({ backupSchedule: "Mon..Fri *-*-* 03:30" }).problems, []);
            assert.match(
                check({ backupSchedule: "every day at 3" }).problems.join("\n"),
                /^matrix:backup\.schedule: the host's systemd cannot parse "every day at 3" \(Failed to parse calendar specification 'every day at 3': Invalid argument\): use an OnCalendar expression/,
            );
        });

        it("stops `pulumi preview` and `pulumi up` before any change, every problem in one message", async () => {
            sh(
                `printf 'server { listen 80; server_name ${EL}; }\\n' > /etc/nginx/sites-enabled/old-element && systemd-run -q --unit=firewalld sleep 300`,
            );
            try {
                const settings = config({ version: NEW_SYNAPSE });
                const planned = await preview(settings);
                const applied = await deploy(settings);
                for (const r of [planned, applied]) {
                    assert.notEqual(r.code, 0);
                    assert.match(r.errors, /The host is not ready \(2 problems\); nothing was deployed/);
                    assert.match(r.errors, /firewalld is active/);
                    assert.match(r.errors, new RegExp(`old-element claims ${EL.replace(/\./g, "\\.")}`));
                    assert.deepEqual(r.changed, []);
                }
            } finally {
                sh("rm -f /etc/nginx/sites-enabled/old-element; systemctl stop firewalld");
            }
        });
    });
});
