// The preflight script run on this machine, read-only, as a host runs it: each fact it prints is
// what the system's own tools say (dpkg, /proc, /etc/os-release, pg_lsclusters).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
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
});
