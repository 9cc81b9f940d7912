// The preflight script run on this machine, read-only, as a host runs it: each fact it prints is
// what the system's own tools say (dpkg, /proc, /etc/os-release, pg_lsclusters).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, readlinkSync, readdirSync } from "node:fs";
import { describe, it } from "@jest/globals";
import { parseFacts } from "../../lib/preflight";
import { renderPreflightScript } from "../../render/preflight";
import { run } from "./tools";

describe("the preflight script on a real system", () => {
    const out = run("bash", ["-c", renderPreflightScript({ database: "postgres" })]);
    const facts = parseFacts(out.stdout);

    it("reports the release, process 1 and the architecture as the system has them", () => {
        assert.equal(out.status, 0, out.stderr);
        const release = Object.fromEntries(
            readFileSync("/etc/os-release", "utf8")
                .split("\n")
                .map((l) => l.match(/^([A-Z_]+)="?([^"]*)"?$/))
                .filter((m) => m !== null)
                .map((m) => [m[1], m[2]]),
        );
        assert.deepEqual(facts.os, { id: release.ID, version: release.VERSION_ID, name: release.PRETTY_NAME });
        assert.equal(facts.pid1, readFileSync("/proc/1/comm", "utf8").trim());
        assert.equal(facts.arch, run("dpkg", ["--print-architecture"]).stdout.trim());
        assert.ok(facts.memoryKb > 0 && facts.diskKb > 0, out.stdout);
    });

    it("lists this machine's PostgreSQL cluster with its port, and finds a database in it", () => {
        const [version, name, port] = run("pg_lsclusters", ["-h"]).stdout.trim().split("\n")[0]!.split(/\s+/);
        assert.deepEqual(facts.clusters[0], { version, name, port: Number(port), status: "online" });
        assert.deepEqual(facts.databaseIn, [`${version}/${name}`]);
    });

    it("names the process holding dpkg's lock, and exits 0 when processes end during the scan", async () => {
        // The holder is this machine's flock (its sleep inherits the descriptor, so it holds it too).
        const holder = spawn("flock", ["/var/lib/dpkg/lock-frontend", "sleep", "30"], { stdio: "ignore" });
        const holds = () => {
            try {
                return readdirSync(`/proc/${holder.pid}/fd`).some(
                    (fd) => readlinkSync(`/proc/${holder.pid}/fd/${fd}`) === "/var/lib/dpkg/lock-frontend",
                );
            } catch {
                return false;
            }
        };
        try {
            for (let i = 0; i < 100 && !holds(); i++) await new Promise((r) => setTimeout(r, 50));
            assert.ok(holds(), "flock did not take /var/lib/dpkg/lock-frontend");
            const scan = run("bash", ["-c", renderPreflightScript({})]);
            assert.equal(scan.status, 0, scan.stderr);
            const locks = parseFacts(scan.stdout).aptLocks;
            assert.ok(
                locks.some((l) => l.pid === holder.pid && l.name === "flock"),
                `flock (pid ${holder.pid}) not among ${JSON.stringify(locks)}`,
            );
        } finally {
            holder.kill();
        }
    });
});
