// ManagedFile's scripts run for real (bash on this machine instead of over SSH): what `write`
// puts down, `read` finds, and hand edits to content, mode or owner show up in the drift.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, chmodSync, readFileSync, statSync, chownSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, it } from "@jest/globals";
import * as pulumi from "@pulumi/pulumi";
import {
    fileDrift,
    managedFileProvider,
    parseReadOutput,
    renderReadScript,
    renderRemoveScript,
    renderWriteScript,
    type ManagedFileInputs,
} from "../../lib/managedFile";
import { sha256 } from "../../render/shell";
import { run } from "./tools";

const dir = mkdtempSync(path.join(tmpdir(), "managed-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target = path.join(dir, "it's a file.yaml");
const content = "secret: 'x$(touch /tmp/no)'\n";
const wanted: ManagedFileInputs = {
    connection: { host: "unused" },
    path: target,
    content,
    sha256: sha256(content),
    mode: "0640",
    owner: "root",
    group: "nogroup",
};

/** Runs a rendered command line as sshd would hand it to the login shell. */
function bash(command: string, input = ""): string {
    const r = run("sh", ["-c", command], input);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
}

const read = () => parseReadOutput(target, bash(renderReadScript(target)));

describe("managed file scripts (real bash, real files)", () => {
    it("reads an absent file as absent, which is drift", () => {
        const actual = read();
        assert.equal(actual.sha256, "absent");
        assert.deepEqual(fileDrift(actual, wanted), ["sha256", "mode", "owner", "group"]);
    });

    it("writes content from stdin with mode and owner, and then reads no drift", () => {
        bash(renderWriteScript(wanted), content);
        assert.equal(readFileSync(target, "utf8"), content);
        assert.equal(statSync(target).mode & 0o777, 0o640);
        const actual = read();
        assert.equal(actual.sha256, sha256(content));
        assert.deepEqual(fileDrift(actual, wanted), []);
    });

    it("names a hand edit to the content", () => {
        writeFileSync(target, content + "enable_registration: true\n");
        assert.deepEqual(fileDrift(read(), wanted), ["sha256"]);
    });

    it("names a chmod and a chown", () => {
        bash(renderWriteScript(wanted), content);
        chmodSync(target, 0o644);
        chownSync(target, 65534, 0);
        assert.deepEqual(fileDrift(read(), wanted), ["mode", "owner", "group"]);
    });

    it("a second write restores content, mode and owner, and leaves no temporary file", () => {
        writeFileSync(target, "edited\n");
        bash(renderWriteScript(wanted), content);
        assert.deepEqual(fileDrift(read(), wanted), []);
        const leftovers = run("sh", ["-c", `ls -A ${JSON.stringify(dir)}`])
            .stdout.trim()
            .split("\n");
        assert.deepEqual(leftovers, [path.basename(target)]);
    });
});

describe("managed file removal (a vhost or firewall rules on destroy)", () => {
    it("removes the file, and a second run finds nothing to do", () => {
        bash(renderWriteScript(wanted), content);
        bash(renderRemoveScript(target));
        assert.equal(read().sha256, "absent");
        bash(renderRemoveScript(target));
    });
});

describe("managed file provider", () => {
    it("survives Pulumi's closure serialization and diffs the same after it", async () => {
        const sf = await pulumi.runtime.serializeFunction(() => managedFileProvider, { allowSecrets: false });
        // What the engine's dynamic provider host does with the __provider property.
        const requireFromString = require("require-from-string") as (code: string) => {
            handler(): typeof managedFileProvider;
        };
        const provider = requireFromString(sf.text).handler();
        const recorded = { path: target, sha256: wanted.sha256, mode: "640", owner: "root", group: "nogroup" };
        // The provider lives in another realm (require-from-string): compare fields, not prototypes.
        const diff = async (olds: Record<string, unknown>) =>
            (await provider.diff!("id", { ...recorded, generation: 1, connection: wanted.connection, ...olds }, wanted))
                .changes;
        assert.equal(await diff({}), false);
        assert.equal(await diff({ sha256: "0".repeat(64) }), true);
        assert.doesNotMatch(sf.text, /BEGIN OPENSSH PRIVATE KEY/);
    });
});
