// Over SSH, as the operator sees each host: the units that must be active where they run, free
// disk, PostgreSQL's cluster, the newest backup, Synapse's version (one read-only probe per host),
// and the deploy's preflight on the host as it is now.
import * as path from "node:path";
import type { StackConfig } from "../config";
import { MAS_SERVICE } from "../render/mas";
import { judgeHost, parseFacts, preflightScript, type PreflightSettings } from "../lib/preflight";
import type { SshConnection } from "../lib/ssh";
import { BACKUP_PATHS } from "../render/backup";
import { FIREWALL_SERVICE } from "../render/firewall";
import { monitoringServices, MONITORING_PATHS, MONITORING_SERVICES } from "../render/monitoring";
import { RTC_SERVICES } from "../render/rtc";
import { script, shq } from "../render/shell";
import { SYNAPSE_LISTEN, SYNAPSE_PATHS, SYNAPSE_SERVICE } from "../render/synapseBase";
import { TURN_SERVICE } from "../render/turn";
import { REDIS_SERVICE, SYNAPSE_TARGET, WORKER_SERVICE, workerList } from "../render/workers";
import { describeError, withTimeout } from "./network";
import { fail, pass, warn, type CheckResult } from "./report";
import { formatAge, schedulePeriodSeconds } from "./units";

/** The host a unit runs on: the Synapse host, or PostgreSQL's own (matrix:database). */
export type HostRole = "homeserver" | "database";

export interface ExpectedUnit {
    /** A systemd unit name (".service" may be left out). */
    unit: string;
    host: HostRole;
}

/** Every systemd unit the stack runs and that must be active, and on which host. */
export function expectedUnits(cfg: StackConfig): ExpectedUnit[] {
    const workers = workerList(cfg.synapse.workers);
    const database: HostRole = cfg.database ? "database" : "homeserver";
    const homeserver = (unit: string): ExpectedUnit => ({ unit, host: "homeserver" });
    return [
        homeserver(SYNAPSE_SERVICE),
        ...(workers.length > 0
            ? [
                  homeserver(REDIS_SERVICE),
                  ...workers.map((w) => homeserver(`${WORKER_SERVICE}@${w.name}`)),
                  homeserver(SYNAPSE_TARGET),
              ]
            : []),
        homeserver("nginx"),
        { unit: "postgresql", host: database },
        homeserver(path.basename(BACKUP_PATHS.timer)),
        ...(cfg.firewall.enabled
            ? [
                  homeserver(FIREWALL_SERVICE),
                  ...(cfg.database ? [{ unit: FIREWALL_SERVICE, host: "database" as const }] : []),
              ]
            : []),
        ...(cfg.rtc ? [homeserver(RTC_SERVICES.livekit), homeserver(RTC_SERVICES.jwt)] : []),
        ...(cfg.turn ? [homeserver(TURN_SERVICE)] : []),
        ...(cfg.auth?.enabled ? [homeserver(MAS_SERVICE)] : []),
        // matrix:monitoring: the distribution's units, the PostgreSQL exporter where PostgreSQL is.
        ...(cfg.monitoring.enabled
            ? [
                  ...monitoringServices({ localDatabase: cfg.database === undefined }).map((s) =>
                      homeserver(MONITORING_SERVICES[s]),
                  ),
                  homeserver(path.basename(MONITORING_PATHS.metricsTimer)),
              ]
            : []),
    ];
}

/** What one SSH exec reads on a host (a read-only script printing key=value lines). */
export interface HostProbe {
    units: string[];
    /** Folders whose file system's free space is checked. */
    disks: string[];
    /** PostgreSQL's cluster (pg_lsclusters) and its data folder's free space. */
    postgres: boolean;
    backups?: { dir: string; schedule: string };
    synapseVersion?: { url: string; expected: string };
    /** For each command on the host (curl, df). */
    timeoutSeconds: number;
}

/** The probe for one host of the stack. */
export function hostProbe(cfg: StackConfig, role: HostRole, timeoutSeconds: number): HostProbe {
    const databaseHere = role === (cfg.database ? "database" : "homeserver");
    return {
        units: expectedUnits(cfg)
            .filter((u) => u.host === role)
            .map((u) => u.unit),
        disks: role === "homeserver" ? [SYNAPSE_PATHS.dataDir] : [],
        postgres: databaseHere,
        ...(role === "homeserver"
            ? {
                  backups: { dir: SYNAPSE_PATHS.backups, schedule: cfg.backup.schedule },
                  synapseVersion: {
                      url: `http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}/_matrix/federation/v1/version`,
                      expected: cfg.synapse.version,
                  },
              }
            : {}),
        timeoutSeconds,
    };
}

/** The probe as one bash script (through sudo -n for a non-root user); it changes nothing. */
export function renderHostProbe(p: HostProbe, opts: { user?: string } = {}): string {
    const t = Math.max(1, Math.ceil(p.timeoutSeconds));
    const df = (dir: string) =>
        `"$(timeout ${t} df --output=pcent,avail -B1 ${dir} 2>/dev/null | tail -n1 | xargs || true)"`;
    return script(
        [
            // A command that fails reports an empty value: set -e must not end the report.
            'report() { printf \'%s=%s\\n\' "$1" "$2"; }',
            'report now "$(date -u +%s)"',
            ...p.units.map((u) => `report ${shq(`unit:${u}`)} "$(systemctl is-active ${shq(u)} 2>/dev/null || true)"`),
            ...p.disks.map((d) => `report ${shq(`disk:${d}`)} ${df(shq(d))}`),
            ...(p.postgres
                ? [
                      'cluster="$(pg_lsclusters -h 2>/dev/null | head -n1 || true)"',
                      'report postgres.cluster "$cluster"',
                      "data=\"$(printf '%s' \"$cluster\" | awk '{print $6}')\"",
                      `if [ -n "$data" ]; then report "disk:$data" ${df('"$data"')}; fi`,
                  ]
                : []),
            ...(p.backups
                ? [
                      `report backups.folder "$([ -d ${shq(p.backups.dir)} ] && echo present || echo absent)"`,
                      `report backups.newest "$(find ${shq(p.backups.dir)} -mindepth 1 -maxdepth 1 -type d -name '2*Z' -printf '%f\\n' 2>/dev/null | sort | tail -n1 || true)"`,
                  ]
                : []),
            ...(p.synapseVersion
                ? [
                      `report synapse.version "$(curl -fsS --max-time ${t} ${shq(p.synapseVersion.url)} 2>/dev/null | base64 -w0 || true)"`,
                  ]
                : []),
        ],
        opts,
    );
}

/** The probe's key=value lines (a value may hold spaces and '='; a key may not hold '='). */
export function parseHostReport(stdout: string): Map<string, string> {
    const report = new Map<string, string>();
    for (const line of stdout.split("\n")) {
        const i = line.indexOf("=");
        if (i > 0) report.set(line.slice(0, i), line.slice(i + 1).trim());
    }
    return report;
}

/** "20261125T120000Z" (a backup folder's name) as epoch milliseconds. */
export function backupTime(name: string): number | undefined {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(name);
    if (!m) return undefined;
    const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
    return Date.UTC(y, mo - 1, d, h, mi, s);
}

function formatBytes(n: number): string {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
        n /= 1024;
        i++;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

const FREE_DISK = { warnBelow: 15, failBelow: 10 } as const;

/** The results of one host's probe; `label` tells the database host's apart. */
export function evaluateHostReport(p: HostProbe, report: Map<string, string>, label = ""): CheckResult[] {
    const results: CheckResult[] = [];
    for (const unit of p.units) {
        const id = `unit ${unit}${label}`;
        const state = report.get(`unit:${unit}`) || "unknown";
        results.push(
            state === "active"
                ? pass(id, "active")
                : fail(
                      id,
                      state,
                      `on the host: systemctl status ${unit}; journalctl -u ${unit} -n 50; then systemctl start ${unit}, or run pulumi up`,
                  ),
        );
    }
    const disks = [...p.disks];
    if (p.postgres) {
        const id = `postgresql cluster${label}`;
        const cluster = (report.get("postgres.cluster") ?? "").split(/\s+/);
        const [version, name, , status, , data] = cluster;
        if (!version || !name) {
            results.push(fail(id, "no cluster (pg_lsclusters lists none)", "run pulumi up (it installs PostgreSQL)"));
        } else if (!status?.startsWith("online")) {
            results.push(
                fail(
                    id,
                    `${version}/${name} is ${status ?? "in an unknown state"}`,
                    `on the host: pg_ctlcluster ${version} ${name} start; journalctl -u postgresql@${version}-${name} -n 50`,
                ),
            );
        } else {
            results.push(pass(id, `${version}/${name} online`));
        }
        if (data) disks.push(data);
    }
    for (const dir of disks) {
        const id = `disk ${dir}${label}`;
        const m = /^(\d+)%\s+(\d+)$/.exec(report.get(`disk:${dir}`) ?? "");
        if (!m) {
            results.push(fail(id, "df could not read it", `on the host: df -h ${dir} (does the folder exist?)`));
            continue;
        }
        const free = 100 - Number(m[1]);
        const detail = `${free} % free (${formatBytes(Number(m[2]))})`;
        const fix = `free space on ${dir}'s file system (old media: matrix:synapse.mediaRetention; old backups: matrix:backup.retention), or grow the disk`;
        results.push(
            free < FREE_DISK.failBelow
                ? fail(id, detail, fix)
                : free < FREE_DISK.warnBelow
                  ? warn(id, detail, fix)
                  : pass(id, detail),
        );
    }
    if (p.backups) results.push(evaluateBackups(p.backups, report, label));
    if (p.synapseVersion) results.push(evaluateSynapseVersion(p.synapseVersion, report, label));
    return results;
}

function evaluateBackups(
    b: NonNullable<HostProbe["backups"]>,
    report: Map<string, string>,
    label: string,
): CheckResult {
    const id = `backup${label}`;
    const newest = report.get("backups.newest") ?? "";
    const startNow =
        "start one now: systemctl start matrix-synapse-backup.service; journalctl -u matrix-synapse-backup";
    if (newest === "") {
        return warn(
            id,
            `none yet in ${b.dir}${report.get("backups.folder") === "absent" ? " (no such folder)" : ""}`,
            `the first runs on schedule (${b.schedule}); or ${startNow}`,
        );
    }
    const taken = backupTime(newest);
    const now = Number(report.get("now"));
    if (taken === undefined || !Number.isFinite(now)) {
        return fail(id, `cannot tell the age of ${newest}`, `on the host: ls ${b.dir}`);
    }
    const age = now - taken / 1000;
    const period = schedulePeriodSeconds(b.schedule);
    const detail = `newest ${newest}, ${formatAge(Math.max(0, age))} old (schedule ${b.schedule})`;
    if (age > 2 * period) {
        return fail(
            id,
            `${detail}: older than two periods of the schedule`,
            `the timer's runs fail: journalctl -u matrix-synapse-backup; ${startNow}`,
        );
    }
    return pass(id, detail);
}

function evaluateSynapseVersion(
    v: NonNullable<HostProbe["synapseVersion"]>,
    report: Map<string, string>,
    label: string,
): CheckResult {
    const id = `synapse version${label}`;
    let version: unknown;
    try {
        const doc = JSON.parse(Buffer.from(report.get("synapse.version") ?? "", "base64").toString("utf8")) as {
            server?: { version?: unknown };
        };
        version = doc.server?.version;
    } catch {
        version = undefined;
    }
    if (typeof version !== "string") {
        return fail(
            id,
            `Synapse does not answer ${v.url}`,
            `on the host: systemctl status ${SYNAPSE_SERVICE}; journalctl -u ${SYNAPSE_SERVICE} -n 50`,
        );
    }
    // Synapse may append a git description ("1.163.2 (b=…)") when run from a checkout.
    const running = version.split(/\s/)[0] ?? version;
    return running === v.expected
        ? pass(id, running)
        : fail(
              id,
              `${running} runs, matrix:synapse.version is ${v.expected}`,
              "run pulumi up (it installs the pinned release and restarts Synapse)",
          );
}

/** Run one command over SSH (lib/ssh.ts's sshExec by default). */
export type Exec = (c: SshConnection, command: string) => Promise<{ code: number; stdout: string; stderr: string }>;

/** sshExec waits up to 15 s for the connection (its ConnectTimeout) before the per-call timeout starts. */
const SSH_CONNECT_MS = 15_000;

/** One host's probe over SSH, evaluated. */
export async function checkHost(
    connection: SshConnection,
    probe: HostProbe,
    opts: { exec: Exec; timeoutMs: number; label?: string; preflight?: PreflightSettings },
): Promise<CheckResult[]> {
    const label = opts.label ?? "";
    const who = `${connection.user ?? "root"}@${connection.host}:${connection.port ?? 22}`;
    const id = `ssh ${who}`;
    const fix =
        "check matrix:machine (address, sshPort, sshUser, sshHostKey) and matrix:sshPrivateKey; the host must accept the key";
    let r: { code: number; stdout: string; stderr: string };
    try {
        r = await withTimeout(
            opts.timeoutMs + SSH_CONNECT_MS,
            `ssh ${who}`,
            opts.exec(connection, renderHostProbe(probe, { user: connection.user })),
        );
    } catch (err) {
        return [fail(id, describeError(err), fix)];
    }
    const report = parseHostReport(r.stdout);
    if (r.code !== 0 || !report.has("now")) {
        const said = r.stderr.trim().split("\n").slice(-2).join(" ") || `exit ${r.code}`;
        return [
            fail(
                id,
                said,
                /sudo/.test(said) ? `${connection.user ?? "the SSH user"} needs password-less sudo (sudo -n)` : fix,
            ),
        ];
    }
    return [
        pass(id, "reached"),
        ...evaluateHostReport(probe, report, label),
        ...(opts.preflight ? await checkPreflight(connection, opts.preflight, opts, label) : []),
    ];
}

/**
 * The deploy's preflight (lib/preflight.ts) on the host as it is now: what would stop the next
 * `pulumi up` (another firewall manager, a server on 80 or 443, a site claiming our names, apt's
 * lock, a release or resources the program does not support).
 */
async function checkPreflight(
    connection: SshConnection,
    settings: PreflightSettings,
    opts: { exec: Exec; timeoutMs: number },
    label: string,
): Promise<CheckResult[]> {
    const id = `preflight${label}`;
    const script = preflightScript(settings, connection.user);
    let r: { code: number; stdout: string; stderr: string };
    try {
        r = await withTimeout(opts.timeoutMs + SSH_CONNECT_MS, id, opts.exec(connection, script));
    } catch (err) {
        return [fail(id, describeError(err), "run it again; the host did not answer in time")];
    }
    if (r.code !== 0) return [fail(id, r.stderr.trim().split("\n").slice(-1)[0] ?? `exit ${r.code}`, "see the host")];
    const judged = judgeHost(parseFacts(r.stdout), { ...settings, dryRun: true });
    // Each line is "key: what was found: the fix"; the fix is what follows the last ": ".
    const split = (line: string) => {
        const at = line.lastIndexOf(": ");
        return { detail: line.slice(0, at), fix: line.slice(at + 2) };
    };
    const results = [
        ...judged.problems.map((p) => ({ status: "fail" as const, ...split(p) })),
        ...judged.warnings.map((w) => ({ status: "warn" as const, detail: w, fix: "see the line" })),
    ].map((x) => ({ id, ...x }));
    if (results.length > 0) return results;
    const host = judged.host ? judged.host.name : "the host";
    const cluster = judged.cluster
        ? `, PostgreSQL ${judged.cluster.version}/${judged.cluster.name} on ${judged.cluster.port}`
        : "";
    return [pass(id, `${host}${cluster}: nothing would stop a deploy`)];
}
