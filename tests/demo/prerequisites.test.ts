// What `npm run demo` and the wheelhouse recipe need, proven on machines that have nothing else:
// fresh copies of Debian 12 (debootstrap minbase, as a new server has it, apt's lists empty):
//   - one gets the demo's own Debian package list from its own script (scripts/apt-packages.sh
//     demo), then builds the demo's Synapse wheels (lab's wheelhouse script, in a venv made as
//     scripts/demo.sh makes it), which compiles psycopg2 from source;
//   - the other runs docs/operations.md's wheelhouse recipe exactly as written, and nothing else;
// and each wheelhouse is installed offline the way the program installs Synapse on a host.
// pip's cache is off, so nothing built before is reused. This machine lends the container only
// its network and the CA bundle its HTTPS proxy needs (PIP_CERT).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { wheelhouseRecipe } from "../harness/docs";
import { wheelhouseScript } from "../../lab/artifacts";
import { mustRun } from "../../lab/host";
import { CACHE, NEW_SYNAPSE, OLD_SYNAPSE, timed } from "../../lab/session";
import { shq } from "../../render/shell";
import { synapseRequirements, wheelhouseArgs } from "../../render/synapse";

const ROOT = path.resolve(__dirname, "../..");

/** Runs `script` with bash in the container (the clone at /src, read-only), echoing its lines. */
function inContainer(rootfs: string, script: string): Promise<{ code: number; output: string }> {
    const args = [
        "--quiet",
        "--pipe",
        "--register=no",
        "--keep-unit",
        `--directory=${rootfs}`,
        `--bind-ro=${ROOT}:/src`,
        "--bind-ro=/etc/ssl/certs/ca-certificates.crt:/run/proxy-ca.crt",
        // Debian's .deb downloads only (not pip's builds): a warm run skips the download, not the install.
        `--bind=${path.join(CACHE, "prerequisites-apt")}:/var/cache/apt/archives`,
        "--setenv=PIP_CERT=/run/proxy-ca.crt",
        "--setenv=PIP_NO_CACHE_DIR=1",
        "--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1",
        "--setenv=PIP_DEFAULT_TIMEOUT=180",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "/bin/bash",
        "-c",
        `set -euo pipefail\ncd /root\n${script}`,
    ];
    return new Promise((resolve) => {
        const child = spawn("systemd-nspawn", args, { stdio: ["ignore", "pipe", "pipe"] });
        let output = "";
        const take = (d: Buffer) => {
            output += d.toString();
            for (const l of d.toString().split("\n").filter(Boolean)) process.stdout.write(`[fresh debian 12] ${l}\n`);
        };
        child.stdout.on("data", take);
        child.stderr.on("data", take);
        child.on("close", (code) => resolve({ code: code ?? 1, output }));
    });
}

/** Installs Synapse from `wheelhouse` into a new venv as the program does on a host, offline, and imports what it runs. */
const installFrom = (wheelhouse: string, version: string, venv: string) =>
    [
        `/usr/bin/python3 -m venv ${shq(venv)}`,
        `${shq(venv)}/bin/pip install -q ${wheelhouseArgs(wheelhouse)} ${synapseRequirements(version)}`,
        `${shq(venv)}/bin/python -c 'import synapse, psycopg2, txredisapi, hiredis; print("installed synapse", synapse.__version__)'`,
    ].join("\n");

/** The container's script passed and the install it ended with imported Synapse's release. */
function assertInstalled(r: { code: number; output: string }): void {
    assert.equal(r.code, 0, r.output.slice(-3000));
    assert.match(r.output, new RegExp(`installed synapse ${NEW_SYNAPSE.replace(/\./g, "\\.")}\n`));
}

/** A fresh copy of the bare Debian 12 rootfs (cached by lab/host.sh), removed after the suite. */
const rootfses: string[] = [];
function freshDebian12(): string {
    mustRun("bash", [path.join(ROOT, "lab/host.sh"), "rootfs"], { env: { ...process.env, E2E_CACHE: CACHE } });
    mkdirSync(path.join(CACHE, "prerequisites-apt/partial"), { recursive: true });
    const dir = mkdtempSync(path.join(CACHE, "prerequisites-"));
    rootfses.push(dir);
    mustRun("tar", ["-C", dir, "-xf", path.join(CACHE, "bookworm-rootfs.tar")]);
    return dir;
}
afterAll(() => {
    for (const dir of rootfses) rmSync(dir, { recursive: true, force: true });
});

describe("a fresh Debian 12 with only the demo's packages", () => {
    let rootfs: string;
    let packages: { code: number; output: string };

    beforeAll(async () => {
        rootfs = freshDebian12();
        packages = await timed("fresh Debian 12: the demo's packages", () =>
            inContainer(rootfs, "bash /src/scripts/apt-packages.sh demo"),
        );
    });

    it("installs the demo's package list with its own script", () => {
        assert.equal(packages.code, 0, packages.output.slice(-3000));
        assert.doesNotMatch(packages.output, /all \d+ in place/, "the container started without them");
    });

    it("builds the demo's Synapse wheels (psycopg2 from source) and installs Synapse from them", async () => {
        const versions = [OLD_SYNAPSE, NEW_SYNAPSE];
        const r = await timed("fresh Debian 12: the demo's wheel build", () =>
            inContainer(
                rootfs,
                [
                    "/usr/bin/python3 -m venv /root/pip-venv", // scripts/demo.sh's venv
                    `bash -c ${shq(wheelhouseScript(true))} wheels /root/demo-wheels /root/pip-venv/bin/pip 3.11 ${versions.map(shq).join(" ")}`,
                    "ls /root/demo-wheels | grep -c '^psycopg2-.*\\.whl$'",
                    installFrom("/root/demo-wheels", NEW_SYNAPSE, "/root/demo-check"),
                ].join("\n"),
            ),
        );
        assertInstalled(r);
    });
});

describe("a fresh Debian 12 with nothing installed", () => {
    it("runs docs/operations.md's wheelhouse recipe as written, and the host's install takes its wheels", async () => {
        const rootfs = freshDebian12();
        const r = await timed("fresh Debian 12: the documented wheelhouse recipe", () =>
            inContainer(
                rootfs,
                [
                    "mkdir -p /root/recipe && cd /root/recipe",
                    wheelhouseRecipe(),
                    installFrom("/root/recipe/wheelhouse", NEW_SYNAPSE, "/root/recipe-check"),
                ].join("\n"),
            ),
        );
        assertInstalled(r);
    });
});
