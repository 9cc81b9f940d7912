// lib/ssh.ts's shared connections without a host: where the control sockets may live, and how many
// commands run at once on one. The connections themselves are checked on a real host (the
// hardening suite), the host-key file with ssh-keygen (tests/render/ssh.test.ts).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import type * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, it, jest } from "@jest/globals";
import { MUX_SESSIONS, sshMux } from "../../lib/ssh";

const conn = { host: "203.0.113.10", privateKey: "key" };
const g = globalThis as { matrixSshMux?: unknown };
const uid = process.getuid!();
// The module object itself (an `import *` is a copy of it): lib/ssh.ts calls its tmpdir.
const realOs = require("node:os") as typeof os;
const option = (options: string[], name: string) =>
    options.find((o) => o.startsWith(`${name}=`))!.slice(name.length + 1);
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe("sshMux", () => {
    let tmp: string;
    beforeEach(() => {
        tmp = mkdtempSync(path.join(realOs.tmpdir(), "mux-test-"));
        jest.spyOn(realOs, "tmpdir").mockReturnValue(tmp);
        delete g.matrixSshMux;
    });
    afterEach(() => {
        jest.restoreAllMocks();
        // Commands still waiting (a test that failed) get their turn, rather than wait for ever.
        const state = g.matrixSshMux as { masters: Map<string, { failed: boolean; queue: (() => void)[] }> } | null;
        for (const m of state?.masters.values() ?? []) {
            m.failed = true;
            m.queue.splice(0).forEach((next) => next());
        }
        delete g.matrixSshMux;
        rmSync(tmp, { recursive: true, force: true });
    });
    const folder = () => path.join(tmp, `matrix-pulumi-ssh-${uid}`);

    it("keeps the sockets in a folder of this user's alone, one socket per process and connection", () => {
        const a = sshMux(conn)!.options;
        const socket = option(a, "ControlPath");
        assert.equal(path.dirname(socket), folder());
        assert.equal(statSync(folder()).mode & 0o777, 0o700);
        assert.ok(path.basename(socket).startsWith(`${process.pid}-`), socket);
        assert.ok(a.includes("ControlMaster=auto"), a.join(" "));
        assert.equal(sshMux(conn)!.options.join(" "), a.join(" "), "the same connection, the same socket");
        for (const other of [
            { ...conn, host: "203.0.113.11" },
            { ...conn, port: 2222 },
            { ...conn, user: "admin" },
            { ...conn, privateKey: "rotated" },
            { ...conn, hostKey: "ssh-ed25519 AAAA" },
        ]) {
            assert.notEqual(option(sshMux(other)!.options, "ControlPath"), socket, JSON.stringify(other));
        }
    });

    it("gives the connection a host-key file of its own that outlives each command (0600)", () => {
        const file = option(sshMux({ ...conn, hostKey: "ssh-ed25519 AAAA" })!.options, "UserKnownHostsFile");
        assert.equal(path.dirname(file), folder());
        assert.equal(statSync(file).mode & 0o777, 0o600);
    });

    it("removes the host-key files of processes gone, and keeps its own", () => {
        const gone = spawnSync("true").pid;
        mkdirSync(folder(), { mode: 0o700 });
        writeFileSync(path.join(folder(), `${gone}-0123456789abcdef.known_hosts`), "");
        writeFileSync(path.join(folder(), `${process.pid}-0123456789abcdef.known_hosts`), "");
        sshMux(conn);
        assert.equal(existsSync(path.join(folder(), `${gone}-0123456789abcdef.known_hosts`)), false);
        assert.equal(existsSync(path.join(folder(), `${process.pid}-0123456789abcdef.known_hosts`)), true);
    });

    it("shares nothing when the folder is a link, or others can write in it", () => {
        symlinkSync(tmp, folder());
        assert.equal(sshMux(conn), undefined);
        rmSync(folder());
        delete g.matrixSshMux;
        mkdirSync(folder());
        chmodSync(folder(), 0o777);
        assert.equal(sshMux(conn), undefined);
    });

    it("uses /tmp where $TMPDIR's path leaves no room for a socket's name (macOS's is long)", () => {
        const long = path.join(tmp, "x".repeat(60));
        mkdirSync(long);
        jest.spyOn(realOs, "tmpdir").mockReturnValue(long);
        assert.equal(path.dirname(option(sshMux(conn)!.options, "ControlPath")), `/tmp/matrix-pulumi-ssh-${uid}`);
    });

    it("shares nothing with MATRIX_SSH_MUX=0", () => {
        process.env.MATRIX_SSH_MUX = "0";
        try {
            assert.equal(sshMux(conn), undefined);
        } finally {
            delete process.env.MATRIX_SSH_MUX;
        }
    });

    describe("commands at once", () => {
        /** `n` commands waiting for their turn; `started` counts those that got it. */
        const waiting = (mux: NonNullable<ReturnType<typeof sshMux>>, n: number) => {
            const counter = { started: 0 };
            const turns = Array.from({ length: n }, () => mux.acquire().then((r) => (counter.started++, r)));
            return { counter, turns };
        };

        it("one until the first has logged in (its socket is there), then up to MUX_SESSIONS", async () => {
            const mux = sshMux(conn)!;
            const first = await mux.acquire();
            const { counter, turns } = waiting(mux, MUX_SESSIONS + 2);
            await tick(120);
            assert.equal(counter.started, 0, "none beside the connecting command");
            writeFileSync(option(mux.options, "ControlPath"), "");
            await tick(120);
            assert.equal(counter.started, MUX_SESSIONS - 1, "the shared connection's sessions, the first's among them");
            first();
            await tick();
            assert.equal(counter.started, MUX_SESSIONS);
            (await turns[0]!)();
            (await turns[1]!)();
            await tick();
            assert.equal(counter.started, MUX_SESSIONS + 2);
        });

        it("all at once after the first failed to connect (a host that does not answer fails them together)", async () => {
            const mux = sshMux(conn)!;
            const first = await mux.acquire();
            const { counter } = waiting(mux, MUX_SESSIONS + 2);
            first(false);
            await tick();
            assert.equal(counter.started, MUX_SESSIONS + 2);
        });

        it("one again once the connection has closed (its socket gone)", async () => {
            const mux = sshMux(conn)!;
            const socket = option(mux.options, "ControlPath");
            writeFileSync(socket, "");
            const a = await mux.acquire();
            rmSync(socket);
            a();
            const first = await mux.acquire();
            const { counter } = waiting(mux, 1);
            await tick(120);
            assert.equal(counter.started, 0);
            first();
            await tick();
            assert.equal(counter.started, 1);
        });
    });
});
