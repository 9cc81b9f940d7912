// Over SSH (selfcheck/host.ts): the units each host runs, its probe, the report evaluated, and
// the probe run by bash with stub commands in place of systemctl, pg_lsclusters and curl.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "@jest/globals";
import {
    backupTime,
    checkHost,
    evaluateHostReport,
    expectedUnits,
    hostProbe,
    parseHostReport,
    type Exec,
    type HostProbe,
} from "../../selfcheck";
import { byId, config, dir, localExec, stubHost, useServers } from "./fixtures";

useServers();

describe("self-check: pure parts", () => {
    it("reads backup folder names as UTC times", () => {
        assert.equal(backupTime("20261125T120000Z"), Date.UTC(2026, 10, 25, 12, 0, 0));
        assert.equal(backupTime("20261125T120000Z.part"), undefined);
    });

    it("lists the units each host runs", () => {
        assert.deepEqual(expectedUnits(config()), [
            { unit: "matrix-synapse", host: "homeserver" },
            { unit: "nginx", host: "homeserver" },
            { unit: "postgresql", host: "homeserver" },
            { unit: "matrix-synapse-backup.timer", host: "homeserver" },
            { unit: "matrix-pulumi-firewall", host: "homeserver" },
        ]);
        const scaled = expectedUnits(
            config({
                "matrix:synapse": { workers: "small" },
                "matrix:database": { machine: { ipv4: "203.0.113.20" } },
            }),
        );
        const on = (host: string) => scaled.filter((u) => u.host === host).map((u) => u.unit);
        assert.deepEqual(on("homeserver"), [
            "matrix-synapse",
            "matrix-synapse-redis",
            "matrix-synapse-worker@sync1",
            "matrix-synapse-worker@sync2",
            "matrix-synapse-worker@client1",
            "matrix-synapse-worker@federation_sender1",
            "matrix-synapse-worker@media1",
            "matrix-synapse-worker@background1",
            "matrix-synapse.target",
            "nginx",
            "matrix-synapse-backup.timer",
            "matrix-pulumi-firewall",
        ]);
        assert.deepEqual(on("database"), ["postgresql", "matrix-pulumi-firewall"]);
        const open = expectedUnits(config({ "matrix:firewall": { enabled: false } })).map((u) => u.unit);
        assert.ok(!open.includes("matrix-pulumi-firewall"));
        const monitored = (extra: Record<string, unknown>) =>
            expectedUnits(config({ "matrix:monitoring": { enabled: true }, ...extra }))
                .map((u) => u.unit)
                .filter((u) => u.startsWith("prometheus") || u.startsWith("matrix-pulumi-metrics"));
        assert.deepEqual(monitored({}), [
            "prometheus",
            "prometheus-alertmanager",
            "prometheus-node-exporter",
            "prometheus-postgres-exporter",
            "matrix-pulumi-metrics.timer",
        ]);
        // With the database elsewhere, its exporter does not run.
        assert.ok(
            !monitored({ "matrix:database": { machine: { ipv4: "203.0.113.20" } } }).includes(
                "prometheus-postgres-exporter",
            ),
        );
    });

    it("probes each host for what runs there", () => {
        const cfg = config({ "matrix:database": { machine: { ipv4: "203.0.113.20" } } });
        const hs = hostProbe(cfg, "homeserver", 10);
        assert.equal(hs.postgres, false);
        assert.deepEqual(hs.disks, ["/var/lib/matrix-synapse"]);
        assert.equal(hs.backups?.dir, "/var/backups/matrix-synapse");
        assert.equal(hs.synapseVersion?.expected, cfg.synapse.version);
        const db = hostProbe(cfg, "database", 10);
        assert.equal(db.postgres, true);
        assert.equal(db.backups, undefined);
        assert.deepEqual(db.units, ["postgresql", "matrix-pulumi-firewall"]);
        assert.equal(hostProbe(config(), "homeserver", 10).postgres, true);
    });

    describe("a host's report", () => {
        const probe: HostProbe = {
            units: ["matrix-synapse", "nginx"],
            disks: ["/var/lib/matrix-synapse"],
            postgres: true,
            backups: { dir: "/var/backups/matrix-synapse", schedule: "daily" },
            synapseVersion: { url: "http://127.0.0.1:8008/_matrix/federation/v1/version", expected: "1.163.2" },
            timeoutSeconds: 10,
        };
        const now = Date.UTC(2026, 10, 25, 12, 0, 0) / 1000;
        const version = (v: string) =>
            Buffer.from(JSON.stringify({ server: { name: "Synapse", version: v } })).toString("base64");
        const report = (changes: Record<string, string> = {}) =>
            parseHostReport(
                Object.entries({
                    now: String(now),
                    "unit:matrix-synapse": "active",
                    "unit:nginx": "active",
                    "disk:/var/lib/matrix-synapse": "50% 1073741824",
                    "postgres.cluster": "15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/pg.log",
                    "disk:/var/lib/postgresql/15/main": "20% 2147483648",
                    "backups.folder": "present",
                    "backups.newest": "20261125T030000Z",
                    "synapse.version": version("1.163.2"),
                    ...changes,
                })
                    .map(([k, v]) => `${k}=${v}`)
                    .join("\n"),
            );
        const status = (r: Map<string, string>, id: string) => byId(evaluateHostReport(probe, r), id).status;

        it("passes a healthy host", () => {
            const results = evaluateHostReport(probe, report());
            assert.deepEqual(
                results.filter((r) => r.status !== "pass"),
                [],
            );
            assert.deepEqual(
                results.map((r) => r.id),
                [
                    "unit matrix-synapse",
                    "unit nginx",
                    "postgresql cluster",
                    "disk /var/lib/matrix-synapse",
                    "disk /var/lib/postgresql/15/main",
                    "backup",
                    "synapse version",
                ],
            );
            assert.match(byId(results, "disk /var/lib/matrix-synapse").detail, /^50 % free \(1\.0 GiB\)$/);
        });

        it("fails a unit that is not active, and says how to look", () => {
            const r = byId(evaluateHostReport(probe, report({ "unit:nginx": "failed" })), "unit nginx");
            assert.equal(r.status, "fail");
            assert.equal(r.detail, "failed");
            assert.match(r.fix ?? "", /systemctl status nginx/);
            assert.equal(status(report({ "unit:nginx": "" }), "unit nginx"), "fail");
        });

        it("warns under 15 % free disk and fails under 10 %", () => {
            const disk = (used: string) =>
                status(report({ "disk:/var/lib/matrix-synapse": `${used} 1000` }), "disk /var/lib/matrix-synapse");
            assert.equal(disk("85%"), "pass");
            assert.equal(disk("86%"), "warn");
            assert.equal(disk("90%"), "warn", "10 % free is not under 10 %");
            assert.equal(disk("91%"), "fail");
            assert.equal(
                status(report({ "disk:/var/lib/postgresql/15/main": "95% 10" }), "disk /var/lib/postgresql/15/main"),
                "fail",
            );
            assert.equal(
                status(report({ "disk:/var/lib/matrix-synapse": "" }), "disk /var/lib/matrix-synapse"),
                "fail",
            );
        });

        it("warns when there is no backup yet and fails when the newest is older than two periods", () => {
            assert.equal(status(report({ "backups.newest": "" }), "backup"), "warn");
            assert.equal(status(report({ "backups.newest": "20261123T130000Z" }), "backup"), "pass");
            assert.equal(status(report({ "backups.newest": "20261123T110000Z" }), "backup"), "fail");
            const weekly = { ...probe, backups: { dir: "/b", schedule: "weekly" } };
            assert.equal(
                byId(evaluateHostReport(weekly, report({ "backups.newest": "20261120T000000Z" })), "backup").status,
                "pass",
            );
        });

        it("fails a Synapse other than the pinned version, or none answering", () => {
            const r = byId(
                evaluateHostReport(probe, report({ "synapse.version": version("1.150.0") })),
                "synapse version",
            );
            assert.equal(r.status, "fail");
            assert.equal(r.detail, "1.150.0 runs, matrix:synapse.version is 1.163.2");
            assert.match(r.fix ?? "", /pulumi up/);
            assert.equal(status(report({ "synapse.version": "" }), "synapse version"), "fail");
        });

        it("fails a PostgreSQL cluster that is down", () => {
            const down = report({
                "postgres.cluster": "15 main 5432 down postgres /var/lib/postgresql/15/main /x.log",
            });
            assert.equal(status(down, "postgresql cluster"), "fail");
            assert.equal(status(report({ "postgres.cluster": "" }), "postgresql cluster"), "fail");
        });
    });
});

describe("self-check: the host probe (bash with stub commands)", () => {
    it("reads units, disks, PostgreSQL, the newest backup and Synapse's version", async () => {
        const root = path.join(dir, "host");
        const backups = path.join(root, "backups");
        const data = path.join(root, "pgdata");
        mkdirSync(data, { recursive: true });
        const newest = new Date(Date.now() - 3_600_000)
            .toISOString()
            .replace(/[-:]/g, "")
            .replace(/\.\d+Z$/, "Z");
        for (const name of ["20200101T000000Z", newest, "pre-upgrade.dump"])
            mkdirSync(path.join(backups, name), { recursive: true });
        mkdirSync(path.join(backups, "20990101T000000Z.part"));
        stubHost(path.join(root, "bin"), { data, fakeDisks: false });
        const probe: HostProbe = {
            ...hostProbe(config({ "matrix:synapse": { workers: { sync: 1 } } }), "homeserver", 5),
            disks: [root],
            backups: { dir: backups, schedule: "daily" },
        };
        const exec = localExec({ PATH: `${path.join(root, "bin")}:${process.env.PATH}`, DOWN: "matrix-synapse-redis" });
        const results = await checkHost({ host: "203.0.113.10", user: "root" }, probe, { exec, timeoutMs: 5000 });
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["ssh root@203.0.113.10:22", "pass"],
                ["unit matrix-synapse", "pass"],
                ["unit matrix-synapse-redis", "fail"],
                ["unit matrix-synapse-worker@sync1", "pass"],
                ["unit matrix-synapse.target", "pass"],
                ["unit nginx", "pass"],
                ["unit postgresql", "pass"],
                ["unit matrix-synapse-backup.timer", "pass"],
                ["unit matrix-pulumi-firewall", "pass"],
                ["postgresql cluster", "pass"],
                [`disk ${root}`, byId(results, `disk ${root}`).status],
                [`disk ${data}`, byId(results, `disk ${data}`).status],
                ["backup", "pass"],
                ["synapse version", "pass"],
            ],
        );
        assert.match(byId(results, `disk ${root}`).detail, /^\d+ % free \(/);
        assert.equal(byId(results, "backup").detail.startsWith(`newest ${newest}, 60 min old`), true);
        assert.equal(byId(results, "unit matrix-synapse-redis").detail, "failed");
        assert.equal(exec.commands.length, 1, "one SSH exec per host");
        assert.match(exec.commands[0]!, /^bash -c /);
    });

    it("runs the probe through sudo -n for another user, and reports a refusal", async () => {
        const stderrOnly: Exec = () =>
            Promise.resolve({ code: 1, stdout: "", stderr: "sudo: a password is required\n" });
        const r = await checkHost({ host: "h", user: "deploy" }, hostProbe(config(), "homeserver", 5), {
            exec: async (c, command) => {
                assert.match(command, /^sudo -n bash -c /);
                return stderrOnly(c, command);
            },
            timeoutMs: 5000,
        });
        assert.deepEqual(
            r.map((x) => [x.id, x.status]),
            [["ssh deploy@h:22", "fail"]],
        );
        assert.match(r[0]!.fix ?? "", /password-less sudo/);
    });

    it("fails a host SSH does not reach in time", async () => {
        const r = await checkHost({ host: "h" }, hostProbe(config(), "homeserver", 1), {
            exec: () => new Promise(() => undefined),
            // The deadline is the timeout plus sshExec's 15 s to connect: 100 ms here.
            timeoutMs: -14_900,
        });
        assert.equal(r[0]!.status, "fail");
        assert.match(r[0]!.detail, /no answer within/);
    });
});
