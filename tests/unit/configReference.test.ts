// The configuration reference in docs/ is the schema's: regenerate it with npm run docs:config.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "@jest/globals";
import { renderConfigReference, withConfigReference } from "../../config/reference";

const PAGE = path.resolve(__dirname, "../../docs/configuration.md");

describe("docs/configuration.md", () => {
    it("holds the reference generated from the schema (npm run docs:config rewrites it)", () => {
        const page = readFileSync(PAGE, "utf8");
        assert.equal(page, withConfigReference(page), "docs/configuration.md is stale: run npm run docs:config");
    });

    it("documents every key with a meaning, and the required ones as required", () => {
        const table = renderConfigReference()
            .split("\n")
            .filter((l) => l.startsWith("| `"));
        const undocumented = table.filter((l) => l.trimEnd().endsWith("|  |"));
        assert.deepEqual(undocumented, []);
        const row = (key: string) => table.find((l) => l.startsWith(`| \`${key}\` |`)) ?? "";
        assert.match(row("domain"), /\*\*required\*\*/);
        assert.match(row("rtc.livekit.sha256"), /\*\*required\*\* with `rtc`/);
        assert.match(row("synapse.maxUploadSize"), /`"50M"`/);
        assert.match(row("turn.relayPorts.max"), /`49251`/);
    });
});
