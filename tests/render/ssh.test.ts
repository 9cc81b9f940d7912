// SSH as OpenSSH's own tools see it: the pinned host key as ssh looks it up (ssh-keygen -F reads
// known_hosts the way ssh does): on port 22 by the address, on any other port as "[address]:port";
// and real keys from ssh-keygen, with and without a passphrase, through the config check.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, it } from "@jest/globals";
import { parseStackConfig } from "../../config";
import { sshArgs, sshMux } from "../../lib/ssh";
import { baseConfig, TEST_HOST_KEY } from "../harness/run";
import { run } from "./tools";

/** Whether ssh, connecting to `lookup`, finds the pinned key in the known_hosts file sshArgs wrote. */
function pinnedFor(port: number | undefined, lookup: string): boolean {
    const ssh = sshArgs({ host: "203.0.113.10", port, hostKey: TEST_HOST_KEY });
    try {
        const file = ssh.args.find((a) => a.startsWith("UserKnownHostsFile="))!.split("=")[1]!;
        return run("ssh-keygen", ["-F", lookup, "-f", file]).status === 0;
    } finally {
        ssh.cleanup();
    }
}

describe("sshArgs: the pinned host key", () => {
    it("is found for the address on port 22", () => {
        assert.equal(pinnedFor(undefined, "203.0.113.10"), true);
        assert.equal(pinnedFor(22, "203.0.113.10"), true);
    });

    it("is found for [address]:port on another port, as ssh looks it up there", () => {
        assert.equal(pinnedFor(2222, "[203.0.113.10]:2222"), true);
        assert.equal(pinnedFor(2222, "203.0.113.10"), false);
    });
});

describe("sshMux: a shared connection's host-key file", () => {
    it("holds the pinned key as ssh looks it up, and sshArgs then names that file alone", () => {
        const c = { host: "203.0.113.10", port: 2222, hostKey: TEST_HOST_KEY };
        const options = sshMux(c)!.options;
        const file = options.find((o) => o.startsWith("UserKnownHostsFile="))!.split("=")[1]!;
        assert.equal(run("ssh-keygen", ["-F", "[203.0.113.10]:2222", "-f", file]).status, 0);
        const ssh = sshArgs(c, ...options);
        try {
            assert.deepEqual(
                ssh.args.filter((a) => a.startsWith("UserKnownHostsFile=")),
                [`UserKnownHostsFile=${file}`],
            );
        } finally {
            ssh.cleanup();
        }
    });
});

describe("matrix:sshPrivateKey: a key no step can use", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "matrix-keys-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    /** A real key from ssh-keygen: `passphrase` "" for none; `format` ssh-keygen's `-m` flags (PKCS8: PEM). */
    const key = (name: string, passphrase: string, ...format: string[]) => {
        const file = path.join(dir, name);
        const r = run("ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-f", file, ...format]);
        assert.equal(r.status, 0, r.stderr);
        return readFileSync(file, "utf8");
    };
    const parseWith = (privateKey: string) => () =>
        parseStackConfig({ ...baseConfig(), "matrix:sshPrivateKey": privateKey }, { cloudflareToken: true });

    it("refuses a key protected by a passphrase (OpenSSH's format, and PEM's), naming the fix", () => {
        for (const k of [key("openssh", "secret words"), key("pem", "secret words", "-m", "PKCS8")]) {
            assert.throws(
                parseWith(k),
                /matrix:sshPrivateKey: the key is protected by a passphrase, which no step can type/,
            );
        }
    });

    it("takes the same keys without a passphrase", () => {
        for (const k of [key("openssh-plain", ""), key("pem-plain", "", "-m", "PKCS8")]) {
            assert.doesNotThrow(parseWith(k));
        }
    });
});
