// Jest's order for test:hosts (tests/sequencer.js): the auth suite's host test before every other
// suite's, since test:all builds MAS's tarball while the others run and the auth suite waits for it.
import assert from "node:assert/strict";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, it } from "@jest/globals";

const AuthLast = require("../sequencer") as new (o: unknown) => {
    sort(tests: unknown[]): Promise<{ path: string }[]>;
};

describe("the test sequencer", () => {
    it("puts the auth suite's host test first, the others in Jest's own order (largest first on a first run)", async () => {
        const root = path.resolve(__dirname, "../..");
        const context = {
            config: { cacheDirectory: mkdtempSync(path.join(tmpdir(), "jest-cache-")), rootDir: root },
            hasteFS: { getSize: (f: string) => statSync(f).size },
        };
        const files = [
            "tests/auth/auth.test.ts",
            "tests/e2e/e2e.test.ts",
            "tests/auth/config.test.ts",
            "tests/scale/scale.test.ts",
            "tests/cloudflare/cloudflare.test.ts",
        ];
        const tests = files.map((f) => ({ path: path.join(root, f), context, duration: undefined }));
        const sorted = (await new AuthLast({ contexts: [context] }).sort(tests)).map((t) =>
            path.relative(root, t.path),
        );
        assert.equal(sorted[0], "tests/auth/auth.test.ts");
        assert.deepEqual(
            sorted.slice(1),
            [
                "tests/e2e/e2e.test.ts",
                "tests/auth/config.test.ts",
                "tests/scale/scale.test.ts",
                "tests/cloudflare/cloudflare.test.ts",
            ].sort((a, b) => statSync(path.join(root, b)).size - statSync(path.join(root, a)).size),
        );
    });
});
