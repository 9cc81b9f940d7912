// Every remote script, in every variant the program renders, is valid bash and passes shellcheck.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import {
    ELEMENT_PATHS,
    elementReleaseDir,
    renderElementReleaseScript,
    renderElementDataScript,
    renderElementSiteScript,
} from "../../render/element";
import {
    renderAcmeAccountScript,
    renderCertificateScript,
    renderNginxInstallScript,
    renderCertificateDeleteScript,
    renderSitesDeleteScript,
    renderSitesScript,
} from "../../render/nginx";
import { renderDatabaseDataScript, renderDatabaseScript, renderPostgresInstallScript } from "../../render/postgres";
import { hostPackages, renderPackagesScript } from "../../render/packages";
import { script, shq } from "../../render/shell";
import {
    renderSynapseInstallScript,
    renderSynapseDataScript,
    renderSynapseServiceDeleteScript,
    renderSynapseServiceScript,
} from "../../render/synapse";
import {
    renderRedisDeleteScript,
    renderRedisScript,
    renderWorkersDeleteScript,
    renderWorkersScript,
} from "../../render/workers";
import {
    renderDatabaseClientCommand,
    renderDatabaseNetworkDeleteScript,
    renderDatabaseNetworkScript,
} from "../../render/databaseHost";
import {
    renderBackupCommand,
    renderBackupDeleteScript,
    renderBackupScript,
    renderRestoreCommand,
} from "../../render/backup";
import { renderReadScript, renderRemoveScript, renderWriteScript } from "../../lib/managedFile";
import {
    renderFirewallApplyScript,
    renderFirewallDeleteScript,
    renderFirewallInstallDeleteScript,
    renderFirewallInstallScript,
} from "../../render/firewall";
import {
    renderMetricsCommand,
    renderMonitoringDirsScript,
    renderMonitoringScript,
    renderMonitoringStopScript,
} from "../../render/monitoring";
import {
    renderRtcDirsScript,
    renderRtcReleaseScript,
    renderRtcServiceScript,
    renderRtcStopScript,
    rtcBinaryPath,
} from "../../render/rtc";
import { renderTurnDirsScript, renderTurnServiceScript } from "../../render/turn";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { run, scriptBody } from "./tools";
import { renderPreflightScript } from "../../render/preflight";

const CLUSTER = { version: "15", name: "main", port: 5432 };

const dataSteps = (name: string, make: (purge: boolean) => { create: string; delete: string }) => ({
    [`${name}DataCreate`]: make(false).create,
    [`${name}Keep`]: make(false).delete,
    [`${name}Purge`]: make(true).delete,
});

const deleteScripts: Record<string, string> = {
    backupInstall: renderBackupScript({ schedule: "*-*-* 03:30", retention: 3 }),
    backupDelete: renderBackupDeleteScript(),
    firewallDelete: renderFirewallDeleteScript(),
    firewallInstallDelete: renderFirewallInstallDeleteScript(),
    sitesDelete: renderSitesDeleteScript({ disable: ["matrix-homeserver.conf", "matrix-apex.conf"] }),
    acmeSiteDelete: renderSitesDeleteScript({
        disable: ["matrix-acme.conf"],
        files: ["/etc/nginx/sites-available/matrix-acme.conf"],
    }),
    certificateDelete: renderCertificateDeleteScript("a.example.org"),
    synapseServiceDelete: renderSynapseServiceDeleteScript(),
    elementSiteDelete: renderSitesDeleteScript({ disable: [ELEMENT_PATHS.site] }),
    ...dataSteps("synapse", (purge) => renderSynapseDataScript({ purge })),
    ...dataSteps("database", (purge) =>
        renderDatabaseDataScript({ database: "synapse", user: "synapse", purge }, CLUSTER),
    ),
    ...dataSteps("element", (purge) => renderElementDataScript({ purge })),
    managedFileRemove: renderRemoveScript("/etc/x y/it's.conf"),
    redisDelete: renderRedisDeleteScript(),
    workersDelete: renderWorkersDeleteScript(),
    databaseNetworkDelete: renderDatabaseNetworkDeleteScript(CLUSTER),
    monitoringDirsDelete: renderMonitoringDirsScript().delete,
    monitoringStop: renderMonitoringStopScript(),
    rtcDirsDelete: renderRtcDirsScript().delete,
    rtcStop: renderRtcStopScript(),
    turnDirsDelete: renderTurnDirsScript().delete,
};

const acme = { email: "o'brien@example.org", directoryUrl: "https://127.0.0.1:14000/dir", caBundle: true };
const scripts: Record<string, string> = {
    packages: renderPackagesScript(hostPackages({ firewall: true })),
    postgresInstall: renderPostgresInstallScript(CLUSTER),
    firewallInstall: renderFirewallInstallScript(),
    firewallApply: renderFirewallApplyScript({ revision: "/etc/matrix-pulumi/firewall.nft:abc:1" }),
    database: renderDatabaseScript({ database: "synapse", user: "synapse" }, CLUSTER),
    synapseInstall: renderSynapseInstallScript({ version: "1.163.2" }),
    synapseInstallWheelhouse: renderSynapseInstallScript({
        version: "1.163.2",
        wheelhouse: "/srv/wheels dir",
    }),
    synapseInstallWheelhouseUrl: renderSynapseInstallScript({
        version: "1.163.2",
        wheelhouse: "http://10.0.0.1:8099/wheels/",
    }),
    managedFileWrite: renderWriteScript({ path: "/etc/x y/it's.yaml", mode: "0640", owner: "root", group: "adm" }),
    managedFileRead: renderReadScript("/etc/x y/it's.yaml"),
    synapseService: renderSynapseServiceScript({ revision: "abc", healthTimeoutSeconds: 60, version: "1.163.2" }),
    nginxInstall: renderNginxInstallScript({
        hosts: ["a.example.org", "b.example.org"],
        ipv6: true,
        acmeCaBundle: "PEM",
    }),
    nginxInstallNoCa: renderNginxInstallScript({ hosts: ["a.example.org"], ipv6: false }),
    acmeAccount: renderAcmeAccountScript(acme),
    certificate: renderCertificateScript({ ...acme, host: "a.example.org" }),
    sites: renderSitesScript({
        enabled: ["matrix-homeserver.conf", "matrix-apex.conf"],
        absent: ["old.conf"],
        revision: "/etc/nginx/sites-available/matrix-homeserver.conf:abc:1",
    }),
    elementRelease: renderElementReleaseScript({
        version: "1.12.29",
        url: "https://x.example/e.tgz",
        sha256: "a".repeat(64),
    }),
    elementSite: renderElementSiteScript({ version: "1.12.29", sha256: "a".repeat(64), revision: "x:abc:2" }),
    // Revisions are what filesRevision makes: one line per file.
    redis: renderRedisScript({ revision: "/etc/matrix-synapse/redis.conf:abc:1\n/etc/x.service:def:2" }),
    workers: renderWorkersScript({
        workers: [
            { name: "sync1", port: 8111, revision: "abc" },
            { name: "federation_sender1", revision: "def" },
        ],
        healthTimeoutSeconds: 60,
    }),
    workersNone: renderWorkersScript({ workers: [], healthTimeoutSeconds: 60 }),
    monitoringDirs: renderMonitoringDirsScript().create,
    monitoring: renderMonitoringScript({
        services: [
            { service: "prometheus", revision: "a" },
            { service: "postgres", revision: "b" },
        ],
        metricsRevision: "c",
        cluster: CLUSTER,
    }),
    monitoringRemoteDatabase: renderMonitoringScript({
        services: [{ service: "node", revision: "a" }],
        metricsRevision: "c",
    }),
    packagesTurn: renderPackagesScript(hostPackages({ firewall: true, turn: true })),
    rtcDirs: renderRtcDirsScript().create,
    rtcReleaseLivekit: renderRtcReleaseScript({
        binary: "livekit-server",
        version: "1.13.5",
        url: "https://x.example/livekit it's.tar.gz",
        sha256: "b".repeat(64),
    }),
    rtcService: renderRtcServiceScript({
        livekitRevision: "/etc/matrix-rtc/livekit.yaml:abc:1",
        jwtRevision: "/etc/matrix-rtc/lk-jwt-service.keys:def:1",
        binaries: [
            "/opt/matrix-rtc/livekit-server-v1.13.5-bbbbbbbbbbbb",
            "/opt/matrix-rtc/lk-jwt-service-v0.5.0-cccccccccccc",
        ],
        livekitBinary: "/opt/matrix-rtc/livekit-server-v1.13.5-bbbbbbbbbbbb",
    }),
    turnDirs: renderTurnDirsScript().create,
    turnService: renderTurnServiceScript({ certificateHost: "matrix.example.org", port: 3478, revision: "x:abc:1" }),
    databaseNetwork: renderDatabaseNetworkScript(
        {
            listenAddress: "10.0.0.3",
            clientAddress: "10.0.0.2",
            database: "synapse",
            user: "synapse",
        },
        CLUSTER,
    ),
    preflight: renderPreflightScript({ database: "synapse" }),
};

describe("installed commands", () => {
    const files: Record<string, string> = {
        "matrix-synapse-backup": renderBackupCommand({ retention: 7 }),
        "matrix-synapse-restore": renderRestoreCommand(),
        "matrix-synapse-db": renderDatabaseClientCommand(),
        "matrix-pulumi-metrics": renderMetricsCommand({ backupSchedule: "Mon *-*-* 03:30" }),
    };
    for (const [name, text] of Object.entries(files)) {
        it(`${name} is valid bash and passes shellcheck`, () => {
            assert.equal(run("bash", ["-n"], text).status, 0);
            const lint = run("shellcheck", ["--shell=bash", "--severity=warning", "-"], text);
            assert.equal(lint.status, 0, lint.stdout);
        });
    }
});

describe("the project's own shell scripts", () => {
    for (const file of [
        ".ci/run",
        "scripts/tools-pulumi.sh",
        "scripts/tools-rtc.sh",
        "lab/host.sh",
        "tests/render/nginx-harness.sh",
    ]) {
        it(`${file} passes shellcheck`, () => {
            const lint = run("shellcheck", ["--severity=warning", path.resolve(__dirname, "../..", file)]);
            assert.equal(lint.status, 0, lint.stdout);
        });
    }
});

describe("remote scripts", () => {
    for (const [name, command] of Object.entries({ ...scripts, ...deleteScripts })) {
        it(`${name} is valid bash and passes shellcheck`, () => {
            const body = scriptBody(command);
            assert.match(body, /^set -euo pipefail\n/);
            const syntax = run("bash", ["-n"], body);
            assert.equal(syntax.status, 0, syntax.stderr);
            const lint = run("shellcheck", ["--shell=bash", "--severity=warning", "-"], body);
            assert.equal(lint.status, 0, lint.stdout);
        });
    }

    it("quotes values so nothing in them runs", () => {
        const evil = `x'; touch /tmp/pwned-$$; echo '`;
        const res = run("bash", ["-c", script([`printf '%s' ${shq(evil)}`])]);
        assert.equal(res.stdout, evil);
    });

    it("goes through sudo for a non-root SSH user", () => {
        assert.match(renderPostgresInstallScript(CLUSTER, { user: "deploy" }), /^sudo -n bash -c /);
        assert.match(renderPostgresInstallScript(CLUSTER, { user: "root" }), /^bash -c /);
    });
});

describe("Element's releases: the site step keeps the one served and the one before it", () => {
    it("switches, keeps the previous release, removes older ones, and rolls back by a switch", () => {
        const release = (version: string) => ({ version, sha256: version.replace(/\./g, "").padEnd(64, "0") });
        const [a, b, c] = [release("1.12.1"), release("1.12.2"), release("1.12.3")];
        const step = (r: ReturnType<typeof release>) => scriptBody(renderElementSiteScript({ ...r, revision: "x" }));
        const stubs = mkdtempSync(path.join(tmpdir(), "matrix-stubs-"));
        // nginx and systemctl are stand-ins: the releases' folders are what is under test.
        for (const tool of ["nginx", "systemctl"]) {
            writeFileSync(path.join(stubs, tool), "#!/bin/sh\nexit 0\n", { mode: 0o755 });
        }
        const state =
            'echo "=== $(ls /var/www/element/releases | tr "\\n" " ")| $(basename "$(readlink /var/www/element/current)") | $(basename "$(readlink /var/www/element/previous 2>/dev/null)")"';
        const sequence = [a, b, b, c, b];
        const harness = [
            "set -euo pipefail",
            "mount -t tmpfs tmpfs /var/www",
            "mount -t tmpfs tmpfs /etc/nginx",
            "mkdir -p /etc/nginx/sites-enabled /etc/nginx/sites-available",
            `export PATH=${shq(stubs)}:$PATH`,
            // As the release step does: extracted (again, when gone) just before the switch.
            ...sequence.flatMap((r) => [
                `mkdir -p ${shq(elementReleaseDir(r))} && touch ${shq(elementReleaseDir(r))}/index.html`,
                `bash -c ${shq(step(r))} >/dev/null`,
                state,
            ]),
        ].join("\n");
        const res = run("unshare", ["--mount", "bash", "-c", harness]);
        rmSync(stubs, { recursive: true, force: true });
        assert.equal(res.status, 0, res.stderr);
        const dir = (r: ReturnType<typeof release>) => path.basename(elementReleaseDir(r));
        const lines = res.stdout
            .split("=== ")
            .slice(1)
            .map((l) => l.trim());
        assert.deepEqual(lines, [
            `${dir(a)} | ${dir(a)} |`,
            `${dir(a)} ${dir(b)} | ${dir(b)} | ${dir(a)}`,
            // The same release again: the previous one stays the previous one.
            `${dir(a)} ${dir(b)} | ${dir(b)} | ${dir(a)}`,
            `${dir(b)} ${dir(c)} | ${dir(c)} | ${dir(b)}`,
            // A rollback is a switch: both stay.
            `${dir(b)} ${dir(c)} | ${dir(b)} | ${dir(c)}`,
        ]);
    });
});

describe("MatrixRTC's release step: checked before anything is installed", () => {
    it("installs the binary from a tarball or a bare file, and refuses a file whose SHA-256 differs", () => {
        const work = mkdtempSync(path.join(tmpdir(), "matrix-rtc-release-"));
        const bin = "#!/bin/sh\necho it-runs\n";
        writeFileSync(path.join(work, "livekit-server"), bin, { mode: 0o755 });
        writeFileSync(path.join(work, "lk-jwt-service_linux_amd64"), bin, { mode: 0o755 });
        assert.equal(run("tar", ["-czf", path.join(work, "lk.tar.gz"), "-C", work, "livekit-server"]).status, 0);
        const digest = (file: string) => run("sha256sum", [path.join(work, file)]).stdout.split(" ")[0]!;
        const release = (binary: "livekit-server" | "lk-jwt-service", file: string, sha256: string) =>
            scriptBody(
                renderRtcReleaseScript({ binary, version: "1.0.0", url: `file://${path.join(work, file)}`, sha256 }),
            );
        const livekit = { file: "lk.tar.gz", sha256: digest("lk.tar.gz") };
        const jwt = { file: "lk-jwt-service_linux_amd64", sha256: digest("lk-jwt-service_linux_amd64") };
        const installed = (binary: "livekit-server" | "lk-jwt-service", sha256: string) =>
            rtcBinaryPath({ binary, version: "1.0.0", sha256 });
        const harness = [
            "set -uo pipefail",
            "mount -t tmpfs tmpfs /opt && mkdir -p /opt/matrix-rtc",
            "mkdir -p /var/cache && mount -t tmpfs tmpfs /var/cache",
            // aptInstall finds curl and ca-certificates on this machine: nothing is installed.
            `echo "=== wrong"; bash -c ${shq(release("livekit-server", livekit.file, "0".repeat(64)))} 2>&1; echo "exit $?"; ls /opt/matrix-rtc`,
            `echo "=== tarball"; bash -c ${shq(release("livekit-server", livekit.file, livekit.sha256))}; ${shq(installed("livekit-server", livekit.sha256))}`,
            `echo "=== bare"; bash -c ${shq(release("lk-jwt-service", jwt.file, jwt.sha256))}; ${shq(installed("lk-jwt-service", jwt.sha256))}`,
            `echo "=== again"; bash -c ${shq(release("lk-jwt-service", jwt.file, jwt.sha256))}`,
        ].join("\n");
        const res = run("unshare", ["--mount", "bash", "-c", harness]);
        rmSync(work, { recursive: true, force: true });
        const parts = Object.fromEntries(
            res.stdout
                .split("=== ")
                .slice(1)
                .map((p) => [p.slice(0, p.indexOf("\n")), p.slice(p.indexOf("\n") + 1).trim()]),
        );
        assert.match(
            parts.wrong ?? "",
            /has SHA-256 [0-9a-f]{64}, but the stack says 0{64}; nothing was installed\.\nexit 1$/,
        );
        assert.equal(parts.tarball, "livekit-server v1.0.0 installed\nit-runs");
        assert.equal(parts.bare, "lk-jwt-service v1.0.0 installed\nit-runs");
        assert.equal(parts.again, "lk-jwt-service v1.0.0 already in place");
    });
});
