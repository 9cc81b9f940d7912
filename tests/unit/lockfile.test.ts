// The program installs on the machines operators run `pulumi up` from (macOS and Linux, x86-64
// and arm64): a package built for one OS or CPU may only come in as an optional dependency,
// which npm skips where it cannot run (docs/decisions.md: Node.js).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "@jest/globals";

interface LockEntry {
    os?: string[];
    cpu?: string[];
    optional?: boolean;
}

const lock = JSON.parse(readFileSync(path.join(__dirname, "../../package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
};

describe("package-lock.json", () => {
    it("requires no package that runs on one OS or CPU only (each such package is optional)", () => {
        const bound = Object.entries(lock.packages).filter(([, p]) => p.os !== undefined || p.cpu !== undefined);
        assert.ok(bound.length > 0, "the lock names platform packages (esbuild's, swc's): the check reads them");
        const required = bound
            .filter(([, p]) => p.optional !== true)
            .map(([name, p]) => `${name} (os ${p.os?.join(",") ?? "any"}, cpu ${p.cpu?.join(",") ?? "any"})`);
        assert.deepEqual(required, []);
    });
});
