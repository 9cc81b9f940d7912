// test:all builds MAS's tarball beside the host suites and names the build's process in
// MAS_BUILD_PID; the auth suite waits in awaitMasBuild (lab/artifacts.ts) until it has ended.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { afterEach, describe, it } from "@jest/globals";
import { awaitMasBuild } from "../../lab/artifacts";

/** The state letter of /proc/PID/stat ("Z" for a zombie), or undefined when the process is gone. */
const state = (pid: number) =>
    existsSync(`/proc/${pid}/stat`) ? readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] : undefined;
const running = (pid: number) => state(pid) !== undefined && state(pid) !== "Z";

describe("awaitMasBuild", () => {
    const saved = process.env.MAS_BUILD_PID;
    afterEach(() => {
        if (saved === undefined) delete process.env.MAS_BUILD_PID;
        else process.env.MAS_BUILD_PID = saved;
    });

    it("returns at once without MAS_BUILD_PID, while another process runs", async () => {
        delete process.env.MAS_BUILD_PID;
        const other = spawn("sleep", ["30"], { stdio: "ignore" });
        try {
            await awaitMasBuild();
            assert.ok(running(other.pid!), "returned only once the unrelated process had ended");
        } finally {
            other.kill();
        }
    });

    it("waits while the named build runs, and returns once it has exited", async () => {
        const build = spawn("sleep", ["2"], { stdio: "ignore" });
        process.env.MAS_BUILD_PID = String(build.pid);
        assert.ok(running(build.pid!));
        await awaitMasBuild();
        assert.ok(!running(build.pid!), "returned while the build was still running");
    });

    it("returns once the build has exited though its parent has not reaped it yet (a zombie)", async () => {
        // bash starts the build, prints its PID, then becomes a sleep that never waits for it.
        const parent = spawn("bash", ["-c", "sleep 1 & echo $!; exec sleep 30"], {
            stdio: ["ignore", "pipe", "ignore"],
        });
        try {
            const pid = Number(
                await new Promise<string>((r) => parent.stdout.once("data", (d: Buffer) => r(String(d)))),
            );
            process.env.MAS_BUILD_PID = String(pid);
            await awaitMasBuild();
            assert.equal(state(pid), "Z", "the build was still running (or reaped) when it returned");
        } finally {
            parent.kill();
        }
    }, 20_000);
});
