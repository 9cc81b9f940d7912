// `npm run self-check`: the deployed homeserver as another server and a client see it (DNS, TLS,
// well-known, federation keys, the client API, Element), and as its operator sees it over SSH
// (units, backups, free disk, Synapse's version). Every check returns results, never prints;
// scripts/self-check.ts reads the stack, prints and sets the exit code.
import { createPublicKey, verify as verifySignature } from "node:crypto";
import { lookup as dnsLookup, Resolver } from "node:dns/promises";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import * as https from "node:https";
import { connect as tcpConnect, isIP } from "node:net";
import * as path from "node:path";
import { Readable } from "node:stream";
import * as tls from "node:tls";
import { z } from "zod";
import { preflightSettings, publicHostnames, type StackConfig } from "../config";
import { judgeHost, parseFacts, preflightScript, type PreflightSettings } from "./preflight";
import { BACKUP_PATHS } from "../render/backup";
import { renderElementSite } from "../render/element";
import { FIREWALL_SERVICE } from "../render/firewall";
import { monitoringServices, MONITORING_PATHS, MONITORING_SERVICES } from "../render/monitoring";
import { NGINX_PATHS } from "../render/nginx";
import { rtcUrls, RTC_SERVICES } from "../render/rtc";
import { TURN_SERVICE } from "../render/turn";
import { script, shq } from "../render/shell";
import { SYNAPSE_LISTEN, SYNAPSE_PATHS, SYNAPSE_SERVICE } from "../render/synapseBase";
import { wellKnownServer } from "../render/wellknown";
import { REDIS_SERVICE, SYNAPSE_TARGET, WORKER_SERVICE, workerList } from "../render/workers";
import { sshExec, type SshConnection } from "./ssh";

// ---- results ----

export type CheckStatus = "pass" | "warn" | "fail";

/** One line of the report. `fix` says what to do about a warning or failure. */
export interface CheckResult {
    id: string;
    status: CheckStatus;
    detail: string;
    fix?: string;
}

export interface Summary {
    passed: number;
    warnings: number;
    failed: number;
}

/** What a run reports (`--json` prints it). */
export interface SelfCheckReport {
    results: CheckResult[];
    summary: Summary;
}

const pass = (id: string, detail: string): CheckResult => ({ id, status: "pass", detail });
const warn = (id: string, detail: string, fix: string): CheckResult => ({ id, status: "warn", detail, fix });
const fail = (id: string, detail: string, fix: string): CheckResult => ({ id, status: "fail", detail, fix });

export function summarize(results: CheckResult[]): Summary {
    const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
    return { passed: count("pass"), warnings: count("warn"), failed: count("fail") };
}

/** `PASS tls matrix.example.org: valid 89 days, TLSv1.3`, or `FAIL …: … — fix: …`. */
export function formatResult(r: CheckResult): string {
    const fix = r.status !== "pass" && r.fix ? ` — fix: ${r.fix}` : "";
    return `${r.status.toUpperCase()} ${r.id}: ${r.detail}${fix}`;
}

export function formatSummary(s: Summary): string {
    return `${s.passed} passed, ${s.warnings} warnings, ${s.failed} failed`;
}

// ---- what the stack says ----

const stackOutputsSchema = z.object({
    serverName: z.string().min(1),
    homeserverUrl: z.url(),
    elementUrl: z.url(),
    delegation: z.enum(["apex", "external", "none"]),
});

/** The stack outputs the checks read (`pulumi stack output --json`). */
export type StackOutputs = z.infer<typeof stackOutputsSchema>;

/** Validate `pulumi stack output --json`; throws a sentence naming what is missing. */
export function parseStackOutputs(raw: unknown): StackOutputs {
    const r = stackOutputsSchema.safeParse(raw);
    if (r.success) return r.data;
    const keys = [...new Set(r.error.issues.map((i) => String(i.path[0] ?? "outputs")))];
    throw new Error(
        `the stack's outputs lack ${keys.join(", ")}: it has not been deployed (run pulumi up first, or pick the stack with --stack)`,
    );
}

/** What the self-check needs from a stack: its validated config, its outputs, and the SSH key. */
export interface SelfCheckTarget {
    cfg: StackConfig;
    outputs: StackOutputs;
    /** matrix:sshPrivateKey (PEM); used for the checks over SSH only. */
    sshPrivateKey: string;
}

// ---- pure helpers ----

/** Bytes in a matrix:synapse.maxUploadSize ("50M"): K and M are binary, as Synapse's parse_size and nginx read them. */
export function uploadSizeBytes(size: string): number {
    const m = /^([0-9]+)([KM]?)$/.exec(size);
    if (!m) throw new Error(`not an upload size (bytes, or a number followed by K or M): ${size}`);
    return Number(m[1]) * (m[2] === "M" ? 1024 * 1024 : m[2] === "K" ? 1024 : 1);
}

const HOUR = 3600;
const DAY = 24 * HOUR;
const CALENDAR_SHORTHANDS: Record<string, number> = {
    minutely: 60,
    hourly: HOUR,
    daily: DAY,
    weekly: 7 * DAY,
    monthly: 31 * DAY,
    quarterly: 92 * DAY,
    semiannually: 184 * DAY,
    yearly: 366 * DAY,
    annually: 366 * DAY,
};

const WEEKDAY = "(mon|tue|wed|thu|fri|sat|sun)[a-z]*";
const WEEKDAYS = new RegExp(`^${WEEKDAY}((,|\\.\\.)${WEEKDAY})*$`);

/**
 * The longest time between two runs of a systemd OnCalendar schedule, in seconds, for the forms
 * stacks use: the shorthands ("daily", "weekly"), "[weekday] *-*-* HH:MM[:SS]" with `*` or lists
 * in the time, a fixed day of the month or year. Anything else counts as daily: the backup check
 * then fails only once the newest backup is two days old.
 */
export function schedulePeriodSeconds(schedule: string): number {
    const s = schedule.trim().toLowerCase();
    const shorthand = CALENDAR_SHORTHANDS[s];
    if (shorthand !== undefined) return shorthand;
    const parts = s.split(/\s+/);
    const weekdays = parts[0] !== undefined && WEEKDAYS.test(parts[0]) ? parts.shift() : undefined;
    const date = parts.find((p) => p.includes("-"));
    const time = parts.find((p) => p.includes(":"));
    if (parts.some((p) => p !== date && p !== time) || (date ?? time ?? weekdays) === undefined) return DAY;
    const [year = "*", month = "*", day = "*"] = (date ?? "*-*-*").split("-");
    const fixed = (field: string) => /^[0-9]+$/.test(field);
    if (fixed(month) || (fixed(year) && !fixed(day))) return CALENDAR_SHORTHANDS.yearly!;
    if (fixed(day)) return CALENDAR_SHORTHANDS.monthly!;
    if (weekdays !== undefined && !/[,.]/.test(weekdays)) return CALENDAR_SHORTHANDS.weekly!;
    const [hour = "0", minute = "0"] = (time ?? "00:00:00").split(":");
    if (hour === "*" || hour.includes("/")) return minute === "*" || minute.includes("/") ? 60 : HOUR;
    return DAY;
}

/** Sort by Unicode code point (Synapse sorts keys in Python), not UTF-16 unit. */
function compareCodePoints(a: string, b: string): number {
    const x = [...a];
    const y = [...b];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
        if (d !== 0) return d;
    }
    return x.length - y.length;
}

/** Matrix canonical JSON (spec appendix): sorted keys, no whitespace, UTF-8 unescaped, integers only. */
export function canonicalJson(value: unknown): string {
    if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
    if (value !== null && typeof value === "object") {
        const o = value as Record<string, unknown>;
        const keys = Object.keys(o)
            .filter((k) => o[k] !== undefined)
            .sort(compareCodePoints);
        return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
    }
    if (typeof value === "number" && !Number.isInteger(value)) {
        throw new Error(`canonical JSON has no fractions: ${value}`);
    }
    return JSON.stringify(value);
}

/** An ed25519 public key from Matrix's unpadded standard base64. */
function ed25519Key(base64: string) {
    const raw = Buffer.from(base64, "base64");
    if (raw.length !== 32) throw new Error(`an ed25519 key has 32 bytes, not ${raw.length}`);
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

/**
 * What is wrong with a `/_matrix/key/v2/server` response, as a remote server checks it (Synapse's
 * keyring does the same): it names the server, every signature of the server by a key in
 * `verify_keys` verifies over the canonical JSON less `signatures` and `unsigned`, there is at
 * least one, and it is still valid.
 */
export function verifyServerKeys(
    doc: unknown,
    serverName: string,
    now: number,
): { problems: string[]; signedBy: string[]; validUntil?: number } {
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
        return { problems: ["the response is not a JSON object"], signedBy: [] };
    }
    const d = doc as Record<string, unknown>;
    const problems: string[] = [];
    if (d.server_name !== serverName) {
        problems.push(`server_name is ${JSON.stringify(d.server_name)}, not "${serverName}"`);
    }
    const verifyKeys = (d.verify_keys ?? {}) as Record<string, { key?: unknown }>;
    const signatures = ((d.signatures ?? {}) as Record<string, Record<string, unknown>>)[serverName] ?? {};
    const { signatures: _s, unsigned: _u, ...signed } = d;
    const message = Buffer.from(canonicalJson(signed), "utf8");
    const signedBy: string[] = [];
    for (const [keyId, signature] of Object.entries(signatures)) {
        const key = verifyKeys[keyId]?.key;
        // Signatures by keys the response does not list cannot be checked (Synapse skips them).
        if (!keyId.startsWith("ed25519:") || typeof key !== "string") continue;
        let ok = false;
        try {
            ok = verifySignature(null, message, ed25519Key(key), Buffer.from(String(signature), "base64"));
        } catch {
            ok = false;
        }
        if (ok) signedBy.push(keyId);
        else problems.push(`the signature by ${keyId} does not verify`);
    }
    if (signedBy.length === 0 && !problems.some((p) => p.startsWith("the signature"))) {
        problems.push(`not signed by ${serverName} with any key in verify_keys`);
    }
    const validUntil = typeof d.valid_until_ts === "number" ? d.valid_until_ts : undefined;
    if (validUntil === undefined) problems.push("valid_until_ts is missing");
    else if (validUntil <= now) problems.push(`valid_until_ts ${new Date(validUntil).toISOString()} is past`);
    return { problems, signedBy, validUntil };
}

/** The security headers the Element vhost sends (read from the rendered vhost), Cache-Control aside. */
export function elementSecurityHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const m of renderElementSite({ elementHost: "element.invalid", ipv6: false }).matchAll(
        /add_header ([A-Za-z-]+) "([^"]*)" always;/g,
    )) {
        if (m[1]!.toLowerCase() !== "cache-control") headers[m[1]!] = m[2]!;
    }
    return headers;
}

// ---- over SSH: what runs where ----

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

function formatAge(seconds: number): string {
    if (seconds < 2 * HOUR) return `${Math.round(seconds / 60)} min`;
    if (seconds < 2 * DAY) return `${Math.round(seconds / HOUR)} h`;
    return `${Math.round(seconds / DAY)} days`;
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

// ---- the network ----

export interface SelfCheckOptions {
    /** Each network call's timeout, in milliseconds. Default: 10 000. */
    timeoutMs?: number;
    /** PEM CA certificates trusted besides the system's (--ca). */
    ca?: string;
    /** Trust the system's CA store. Default: true (false: only `ca`). */
    systemCa?: boolean;
    /** The DNS server to ask, "IP[:PORT]" (--resolver). Default: the system's. */
    resolver?: string;
    /**
     * Connect elsewhere than DNS says, like curl's --connect-to: "host:port" → "address:port".
     * TLS still names the host. Default: none (tests point names at local servers with it).
     */
    connectTo?: Record<string, string>;
    /** How commands reach a host. Default: sshExec (lib/ssh.ts). */
    exec?: Exec;
    /** The clock, epoch milliseconds. Default: Date.now. */
    now?: () => number;
}

/** How the checks reach the server: timeout, trusted CAs, DNS, overrides. */
export interface Network {
    timeoutMs: number;
    /** The CA certificates TLS verifies against (no intermediates: a server must send its chain). */
    ca: string[];
    resolver?: string;
    connectTo: Record<string, string>;
}

/** The system's CA certificates: Node's own reader where it has one, else Debian's bundle, else Node's. */
export function systemCaCertificates(): string[] {
    const fromNode = (tls as { getCACertificates?: (type: string) => string[] }).getCACertificates;
    if (fromNode) return fromNode("system");
    try {
        return [readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8")];
    } catch {
        return [...tls.rootCertificates];
    }
}

export function makeNetwork(o: SelfCheckOptions = {}): Network {
    const ca = [...(o.systemCa === false ? [] : systemCaCertificates()), ...(o.ca ? [o.ca] : [])];
    if (ca.length === 0) throw new Error("no CA certificates to trust: give --ca, or keep the system's");
    return { timeoutMs: o.timeoutMs ?? 10_000, ca, resolver: o.resolver, connectTo: o.connectTo ?? {} };
}

function newResolver(net: Network): Resolver {
    const r = new Resolver({ timeout: net.timeoutMs, tries: 1 });
    if (net.resolver) r.setServers([net.resolver]);
    return r;
}

function timeoutError(what: string, ms: number): Error {
    return Object.assign(new Error(`${what}: no answer within ${ms / 1000} s`), { code: "ETIMEDOUT" });
}

function withTimeout<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeoutError(what, ms)), ms);
    });
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

function errorCode(err: unknown): string | undefined {
    const code = (err as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : undefined;
}

function describeError(err: unknown): string {
    const message = err instanceof Error ? err.message : String(err);
    const code = errorCode(err);
    return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** DNS answers of one type; a name without such records is an empty list, not an error. */
async function resolveType(net: Network, name: string, type: "A" | "AAAA"): Promise<string[]> {
    const r = newResolver(net);
    try {
        return await withTimeout(
            net.timeoutMs,
            `DNS ${type} ${name}`,
            type === "A" ? r.resolve4(name) : r.resolve6(name),
        );
    } catch (err) {
        if (errorCode(err) === "ENODATA" || errorCode(err) === "ENOTFOUND") return [];
        throw err;
    } finally {
        r.cancel();
    }
}

/** Where a connection to host:port goes: --connect-to, an address, or the name's (IPv4 first). */
async function dial(net: Network, host: string, port: number): Promise<{ address: string; port: number }> {
    const over = net.connectTo[`${host}:${port}`];
    if (over !== undefined) {
        const i = over.lastIndexOf(":");
        return { address: over.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(over.slice(i + 1)) };
    }
    if (isIP(host)) return { address: host, port };
    if (net.resolver === undefined) {
        // The system's lookup, /etc/hosts included, as a browser on this machine would.
        const all = await withTimeout(net.timeoutMs, `resolving ${host}`, dnsLookup(host, { all: true }));
        const address = (all.find((a) => a.family === 4) ?? all[0])?.address;
        if (!address) throw Object.assign(new Error(`${host} does not resolve`), { code: "ENOTFOUND" });
        return { address, port };
    }
    const address = (await resolveType(net, host, "A"))[0] ?? (await resolveType(net, host, "AAAA"))[0];
    if (!address) throw Object.assign(new Error(`${host} has no A or AAAA record`), { code: "ENOTFOUND" });
    return { address, port };
}

export interface HttpResponse {
    status: number;
    headers: IncomingHttpHeaders;
    /** As received: name, value, name, value … (to count repeated headers). */
    rawHeaders: string[];
    body: Buffer;
}

interface RequestOptions {
    method?: string;
    headers?: Record<string, string>;
    body?: string | { zeros: number };
    /** Connect here instead (a federation SRV target); the URL's host still names TLS and Host. */
    via?: { host: string; port: number };
}

const MAX_BODY = 4 * 1024 * 1024;

/** A stream of `n` zero bytes. */
function zeros(n: number): Readable {
    const chunk = Buffer.alloc(64 * 1024);
    let left = n;
    return new Readable({
        read() {
            if (left <= 0) {
                this.push(null);
                return;
            }
            const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= c.length;
            this.push(c);
        },
    });
}

/**
 * One HTTPS request, verified against the network's CAs. The timeout bounds the whole call; for
 * an upload (a body of zeros) it bounds each wait for progress instead, as a large body takes as
 * long as the link needs.
 */
export async function request(net: Network, url: string, o: RequestOptions = {}): Promise<HttpResponse> {
    const u = new URL(url);
    if (u.protocol !== "https:") throw new Error(`not an https URL: ${url}`);
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    const target = await dial(net, o.via?.host ?? hostname, o.via?.port ?? Number(u.port || 443));
    const upload = typeof o.body === "object";
    const length = o.body === undefined ? 0 : typeof o.body === "string" ? Buffer.byteLength(o.body) : o.body.zeros;
    return new Promise<HttpResponse>((resolve, reject) => {
        let done = false;
        // A server may answer before the whole body is sent (nginx's 413), then close: the
        // write error that follows does not replace the answer.
        let responded = false;
        const finish = (err: Error | undefined, res?: HttpResponse) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            req.destroy();
            if (err) reject(err);
            else resolve(res!);
        };
        const req = https.request({
            host: target.address,
            port: target.port,
            servername: isIP(hostname) ? undefined : hostname,
            path: `${u.pathname}${u.search}`,
            method: o.method ?? "GET",
            headers: {
                host: u.host,
                "user-agent": "matrix-pulumi-self-check",
                ...(o.body !== undefined ? { "content-length": String(length) } : {}),
                ...o.headers,
            },
            ca: net.ca,
            agent: false,
            timeout: net.timeoutMs,
        });
        const timer = upload
            ? undefined
            : setTimeout(() => req.destroy(timeoutError(`${o.method ?? "GET"} ${url}`, net.timeoutMs)), net.timeoutMs);
        req.on("timeout", () => req.destroy(timeoutError(`${o.method ?? "GET"} ${url}`, net.timeoutMs)));
        req.on("error", (err) => {
            if (!responded) finish(err);
        });
        req.on("response", (res) => {
            responded = true;
            const chunks: Buffer[] = [];
            let size = 0;
            res.on("data", (c: Buffer) => {
                size += c.length;
                if (size <= MAX_BODY) chunks.push(c);
                else res.destroy();
            });
            res.on("error", (err) => finish(err));
            const complete = () =>
                finish(undefined, {
                    status: res.statusCode ?? 0,
                    headers: res.headers,
                    rawHeaders: res.rawHeaders,
                    body: Buffer.concat(chunks),
                });
            res.on("end", complete);
            res.on("close", complete);
        });
        if (typeof o.body === "object") zeros(o.body.zeros).pipe(req);
        else req.end(o.body);
    });
}

/** Every value of one header, as sent (Node joins or drops repeats in `headers`). */
export function rawHeaderValues(res: HttpResponse, name: string): string[] {
    const values: string[] = [];
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        if (res.rawHeaders[i]!.toLowerCase() === name.toLowerCase()) values.push(res.rawHeaders[i + 1]!);
    }
    return values;
}

/** A JSON value for a message: strings as they are, anything else as JSON ("" for nothing). */
function text(v: unknown): string {
    return typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
}

function parseJson(body: Buffer): unknown {
    try {
        return JSON.parse(body.toString("utf8")) as unknown;
    } catch {
        return undefined;
    }
}

/** What to do when a host does not answer on a port. */
function reachFix(err: unknown, host: string, port: number): string {
    const code = errorCode(err);
    if (code === "ENOTFOUND" || code === "ENODATA") return `create the DNS record for ${host} (see the dns check)`;
    if (code === "ECONNREFUSED") {
        return `nothing listens on ${host}:${port}: on the host, systemctl status nginx; then run pulumi up`;
    }
    if (code?.startsWith("ERR_TLS") || code?.includes("CERT") || code?.includes("SIGNATURE")) {
        return `see the tls check for ${host}`;
    }
    return `open port ${port} in the provider's firewall (and in matrix:firewall); check that ${host} resolves to the host`;
}

// ---- 1. DNS ----

/** One public name resolves to the machine: A = ipv4; AAAA = ipv6 when set, none otherwise. */
export async function checkDns(
    net: Network,
    name: string,
    machine: { ipv4: string; ipv6?: string },
    fix: string,
): Promise<CheckResult> {
    const id = `dns ${name}`;
    let a: string[];
    let aaaa: string[];
    try {
        [a, aaaa] = await Promise.all([resolveType(net, name, "A"), resolveType(net, name, "AAAA")]);
    } catch (err) {
        return fail(
            id,
            `the resolver${net.resolver ? ` ${net.resolver}` : ""} did not answer: ${describeError(err)}`,
            "check this machine's DNS (or the --resolver address), then run again",
        );
    }
    const v6 = (address: string) => new URL(`http://[${address}]/`).hostname;
    const problems: string[] = [];
    if (a.length !== 1 || a[0] !== machine.ipv4) {
        problems.push(
            a.length === 0 ? `no A record (expected ${machine.ipv4})` : `A ${a.join(", ")}, not ${machine.ipv4}`,
        );
    }
    if (machine.ipv6) {
        const want = v6(machine.ipv6);
        if (aaaa.length !== 1 || v6(aaaa[0]!) !== want) {
            problems.push(
                aaaa.length === 0 ? `no AAAA record (expected ${want})` : `AAAA ${aaaa.join(", ")}, not ${want}`,
            );
        }
    } else if (aaaa.length > 0) {
        problems.push(`AAAA ${aaaa.join(", ")}, but matrix:machine has no ipv6 (nginx listens on IPv4 only)`);
    }
    if (problems.length > 0) return fail(id, problems.join("; "), fix);
    return pass(id, [`A ${a.join(", ")}`, ...(aaaa.length ? [`AAAA ${aaaa.join(", ")}`] : [])].join(", "));
}

// ---- 2. TLS ----

interface Handshake {
    authorized: boolean;
    error?: string;
    protocol?: string;
    cert?: tls.PeerCertificate;
}

async function handshake(
    net: Network,
    name: string,
    port: number,
    extra: tls.ConnectionOptions = {},
): Promise<Handshake> {
    const target = await dial(net, name, port);
    return new Promise<Handshake>((resolve, reject) => {
        const socket = tls.connect({
            host: target.address,
            port: target.port,
            servername: name,
            ca: net.ca,
            checkServerIdentity: tls.checkServerIdentity,
            // Verified below, so that the reason can be named.
            rejectUnauthorized: false,
            ...extra,
        });
        const timer = setTimeout(
            () => socket.destroy(timeoutError(`TLS ${name}:${port}`, net.timeoutMs)),
            net.timeoutMs,
        );
        socket.once("secureConnect", () => {
            clearTimeout(timer);
            const cert = socket.getPeerCertificate();
            // A code such as "CERT_HAS_EXPIRED" at run time, whatever the typings say.
            const error: unknown = socket.authorizationError;
            resolve({
                authorized: socket.authorized,
                error: typeof error === "string" ? error : error instanceof Error ? describeError(error) : undefined,
                protocol: socket.getProtocol() ?? undefined,
                cert: cert && Object.keys(cert).length > 0 ? cert : undefined,
            });
            socket.destroy();
        });
        socket.once("error", (err: Error) => {
            clearTimeout(timer);
            reject(err);
        });
    });
}

const RENEW_FIX =
    "renew: certbot renew on the host (its deploy hook reloads nginx); check systemctl status certbot.timer";

function tlsErrorFix(code: string | undefined, name: string): string {
    switch (code) {
        case "CERT_HAS_EXPIRED":
            return RENEW_FIX;
        case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
        case "UNABLE_TO_GET_ISSUER_CERT":
            return "nginx must send the whole chain (ssl_certificate …/fullchain.pem): run pulumi up; for a private CA, pass --ca <its root>";
        case "ERR_TLS_CERT_ALTNAME_INVALID":
            return `the certificate served does not name ${name}: run pulumi up (one certificate per name); check ${name} resolves to the host`;
        default:
            return `the certificate does not chain to a trusted CA: for a private ACME CA pass --ca <its root>; otherwise run pulumi up (matrix:acme.directoryUrl: production, not staging)`;
    }
}

/** The certificate for `name` verifies (chain sent by the server, name, dates), with days to spare; TLS ≥ 1.2. */
export async function checkTls(net: Network, name: string, now: number, port = 443): Promise<CheckResult> {
    const id = `tls ${name}${port === 443 ? "" : `:${port}`}`;
    let h: Handshake;
    try {
        h = await handshake(net, name, port);
    } catch (err) {
        return fail(id, `no TLS handshake: ${describeError(err)}`, reachFix(err, name, port));
    }
    const validTo = h.cert ? new Date(h.cert.valid_to) : undefined;
    const until = validTo ? validTo.toISOString().slice(0, 10) : "unknown";
    if (!h.authorized) {
        const what = h.error === "CERT_HAS_EXPIRED" ? `expired on ${until}` : "does not verify";
        return fail(id, `the certificate ${what} (${h.error ?? "unknown reason"})`, tlsErrorFix(h.error, name));
    }
    if (h.protocol !== "TLSv1.2" && h.protocol !== "TLSv1.3") {
        return fail(id, `negotiated ${h.protocol ?? "no protocol"}`, "run pulumi up (ssl_protocols TLSv1.2 TLSv1.3)");
    }
    const days = validTo ? Math.floor((validTo.getTime() - now) / (DAY * 1000)) : -1;
    const issuer = h.cert?.issuer?.CN ?? h.cert?.issuer?.O;
    const detail = `valid ${days} days (until ${until}), ${h.protocol}${issuer ? `, issuer ${String(issuer)}` : ""}`;
    if (days < 7) return fail(id, detail, RENEW_FIX);
    if (days < 21) return warn(id, `${detail}; renewal is overdue (certbot renews at 30)`, RENEW_FIX);
    return pass(id, detail);
}

/** A handshake limited to TLS 1.0–1.1 (with every cipher allowed) must fail. */
export async function checkLegacyTls(net: Network, name: string, port = 443): Promise<CheckResult> {
    const id = `tls-legacy ${name}${port === 443 ? "" : `:${port}`}`;
    try {
        const h = await handshake(net, name, port, {
            minVersion: "TLSv1",
            maxVersion: "TLSv1.1",
            ciphers: "DEFAULT@SECLEVEL=0",
        });
        return fail(
            id,
            `accepts ${h.protocol ?? "TLS below 1.2"}`,
            `run pulumi up (${NGINX_PATHS.tlsSnippet}: ssl_protocols TLSv1.2 TLSv1.3); another server block on 443 with its own ssl_protocols can override it`,
        );
    } catch (err) {
        const code = errorCode(err) ?? "";
        if (code.startsWith("ERR_SSL") || code === "ECONNRESET" || code === "EPROTO") {
            return pass(id, "TLS 1.0 and 1.1 refused");
        }
        return warn(id, `could not tell: ${describeError(err)}`, reachFix(err, name, port));
    }
}

// ---- 3. well-known ----

/** The problems with a well-known document's response: status, JSON, Content-Type, CORS. */
function jsonDocumentProblems(res: HttpResponse): { doc: unknown; problems: string[] } {
    const problems: string[] = [];
    if (res.status !== 200) problems.push(`HTTP ${res.status}`);
    const types = rawHeaderValues(res, "content-type");
    if (types.length !== 1) problems.push(`${types.length} Content-Type headers (${types.join(" | ")})`);
    else if (types[0] !== "application/json") problems.push(`Content-Type ${types[0]}, not application/json`);
    const cors = rawHeaderValues(res, "access-control-allow-origin");
    if (cors.length !== 1 || cors[0] !== "*") {
        problems.push(
            cors.length === 0 ? "no Access-Control-Allow-Origin" : `Access-Control-Allow-Origin ${cors.join(" | ")}`,
        );
    }
    const doc = parseJson(res.body);
    if (doc === undefined || doc === null || typeof doc !== "object") problems.push("the body is not a JSON object");
    return { doc, problems };
}

async function checkWellKnownDocument(
    net: Network,
    url: string,
    id: string,
    validate: (doc: Record<string, unknown>) => string | undefined,
    fix: string,
    soft: boolean,
): Promise<CheckResult> {
    const report = soft ? warn : fail;
    let res: HttpResponse;
    try {
        res = await request(net, url);
    } catch (err) {
        const u = new URL(url);
        return report(id, `${url}: ${describeError(err)}`, soft ? fix : reachFix(err, u.hostname, 443));
    }
    const { doc, problems } = jsonDocumentProblems(res);
    if (problems.length === 0) {
        const wrong = validate(doc as Record<string, unknown>);
        if (wrong) problems.push(wrong);
    }
    if (problems.length > 0) return report(id, `${url}: ${problems.join("; ")}`, fix);
    return pass(id, `${url}: ${JSON.stringify(doc)}`);
}

const stripSlash = (url: string) => url.replace(/\/+$/, "");

/** /.well-known/matrix/server and /client where the delegation serves them. */
export async function checkWellKnown(
    net: Network,
    s: { serverName: string; homeserverHost: string; homeserverUrl: string; delegation: StackConfig["delegation"] },
): Promise<CheckResult[]> {
    const external = s.delegation === "external";
    const where = (doc: string) =>
        s.delegation === "none"
            ? `https://${s.homeserverHost}/.well-known/matrix/${doc}`
            : `https://${s.serverName}/.well-known/matrix/${doc}`;
    const fix = (doc: string) =>
        external
            ? `publish the stack output wellKnown.${doc} at ${where(doc)} (one Content-Type: application/json, Access-Control-Allow-Origin: *)`
            : `run pulumi up (nginx serves it); if another server answers for ${new URL(where(doc)).hostname}, point its DNS at the host`;
    const mServer = wellKnownServer(s.homeserverHost)["m.server"];
    const server =
        s.delegation === "none"
            ? Promise.resolve(
                  pass("well-known server", `not used: delegation "none", federation reaches ${s.serverName}:8448`),
              )
            : checkWellKnownDocument(
                  net,
                  where("server"),
                  "well-known server",
                  (d) =>
                      d["m.server"] === mServer
                          ? undefined
                          : `m.server is ${JSON.stringify(d["m.server"])}, not "${mServer}"`,
                  fix("server"),
                  external,
              );
    const client = checkWellKnownDocument(
        net,
        where("client"),
        "well-known client",
        (d) => {
            const base = (d["m.homeserver"] as { base_url?: unknown } | undefined)?.base_url;
            return typeof base === "string" && stripSlash(base) === stripSlash(s.homeserverUrl)
                ? undefined
                : `m.homeserver.base_url is ${JSON.stringify(base)}, not "${s.homeserverUrl}"`;
        },
        fix("client"),
        external,
    );
    return Promise.all([server, client]);
}

// ---- 4. federation ----

/** Where another homeserver sends federation requests for `serverName`, found as the spec says. */
export interface FederationEndpoint {
    /** The base URL: its host names TLS and the Host header. */
    url: string;
    /** The address connected to, when SRV names another host. */
    via?: { host: string; port: number };
    /** How it was found, for the report. */
    how: string;
}

/** "host", "host:port", "[v6]:port" → host and port (port undefined when absent). */
function splitHostPort(value: string): { host: string; port?: number } | undefined {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(value);
    if (!m) return undefined;
    return { host: m[1]!, port: m[2] !== undefined ? Number(m[2]) : undefined };
}

async function srvTarget(net: Network, host: string): Promise<{ host: string; port: number } | undefined> {
    const r = newResolver(net);
    try {
        const records = await withTimeout(
            net.timeoutMs,
            `SRV _matrix-fed._tcp.${host}`,
            r.resolveSrv(`_matrix-fed._tcp.${host}`),
        );
        const best = [...records].sort((a, b) => a.priority - b.priority || b.weight - a.weight)[0];
        return best ? { host: best.name, port: best.port } : undefined;
    } catch {
        return undefined;
    } finally {
        r.cancel();
    }
}

/** Server discovery (server-server API): IP literal or port, well-known m.server, SRV, then :8448. */
export async function discoverFederation(net: Network, serverName: string): Promise<FederationEndpoint> {
    const named = splitHostPort(serverName);
    if (named && (named.port !== undefined || isIP(named.host.replace(/^\[|\]$/g, "")))) {
        return { url: `https://${named.host}:${named.port ?? 8448}`, how: "the server name itself" };
    }
    let wellKnown: string;
    try {
        const res = await request(net, `https://${serverName}/.well-known/matrix/server`);
        const doc = res.status === 200 ? parseJson(res.body) : undefined;
        const m = (doc as { "m.server"?: unknown } | undefined)?.["m.server"];
        const delegated = typeof m === "string" ? splitHostPort(m) : undefined;
        if (delegated) {
            if (delegated.port !== undefined) {
                return {
                    url: `https://${delegated.host}:${delegated.port}`,
                    how: `well-known m.server ${m as string}`,
                };
            }
            const srv = await srvTarget(net, delegated.host);
            if (srv) {
                return {
                    url: `https://${delegated.host}`,
                    via: srv,
                    how: `well-known ${delegated.host}, SRV ${srv.host}:${srv.port}`,
                };
            }
            return { url: `https://${delegated.host}:8448`, how: `well-known m.server ${delegated.host} (port 8448)` };
        }
        wellKnown = res.status === 200 ? "no m.server in the well-known" : `no well-known (HTTP ${res.status})`;
    } catch (err) {
        wellKnown = `no well-known (${describeError(err)})`;
    }
    const srv = await srvTarget(net, serverName);
    if (srv) return { url: `https://${serverName}`, via: srv, how: `${wellKnown}; SRV ${srv.host}:${srv.port}` };
    return { url: `https://${serverName}:8448`, how: `${wellKnown}; port 8448` };
}

/** The signing keys a remote server fetches, and the federation version endpoint, where discovery leads. */
export async function checkFederation(
    net: Network,
    serverName: string,
    now: number,
    delegation: StackConfig["delegation"],
): Promise<CheckResult[]> {
    const endpoint = await discoverFederation(net, serverName);
    const u = new URL(endpoint.url);
    const port = endpoint.via?.port ?? Number(u.port || 443);
    const unreachable = (err: unknown) =>
        delegation === "none" && port === 8448 && errorCode(err) !== "ECONNREFUSED"
            ? `open port 8448 in the provider's firewall (delegation "none": federation comes to ${serverName}:8448)`
            : reachFix(err, endpoint.via?.host ?? u.hostname, port);
    const get = (p: string) => request(net, `${endpoint.url}${p}`, { via: endpoint.via });
    const keys = async (): Promise<CheckResult> => {
        const id = "federation keys";
        let res: HttpResponse;
        try {
            res = await get("/_matrix/key/v2/server");
        } catch (err) {
            return fail(id, `${endpoint.url} (${endpoint.how}): ${describeError(err)}`, unreachable(err));
        }
        if (res.status !== 200) {
            return fail(
                id,
                `${endpoint.url}/_matrix/key/v2/server: HTTP ${res.status} (${endpoint.how})`,
                "run pulumi up; on the host, systemctl status matrix-synapse nginx",
            );
        }
        const v = verifyServerKeys(parseJson(res.body), serverName, now);
        if (v.problems.length > 0) {
            return fail(
                id,
                `${endpoint.url} (${endpoint.how}): ${v.problems.join("; ")}`,
                v.problems.some((p) => p.startsWith("server_name"))
                    ? `federation reaches another server than ${serverName}'s: fix the well-known (m.server) or DNS`
                    : `restart Synapse (systemctl restart ${SYNAPSE_SERVICE}); if it persists, something between rewrites the response, or ${SYNAPSE_PATHS.signingKey} changed`,
            );
        }
        const left = v.validUntil !== undefined ? `, valid ${formatAge((v.validUntil - now) / 1000)} more` : "";
        return pass(id, `${endpoint.url} (${endpoint.how}): signed by ${v.signedBy.join(", ")}${left}`);
    };
    const version = async (): Promise<CheckResult> => {
        const id = "federation version";
        try {
            const res = await get("/_matrix/federation/v1/version");
            const server = (parseJson(res.body) as { server?: { name?: unknown; version?: unknown } } | undefined)
                ?.server;
            if (res.status === 200 && typeof server?.name === "string" && typeof server.version === "string") {
                return pass(id, `${server.name} ${server.version}`);
            }
            return fail(
                id,
                `HTTP ${res.status}, no server.name/version`,
                "run pulumi up; on the host, systemctl status matrix-synapse nginx",
            );
        } catch (err) {
            return fail(id, `${endpoint.url}: ${describeError(err)}`, unreachable(err));
        }
    };
    return Promise.all([keys(), version()]);
}

// ---- 5. the client API ----

export async function checkClientApi(
    net: Network,
    s: { homeserverUrl: string; enableRegistration: boolean; maxUploadSize: string },
): Promise<CheckResult[]> {
    const hs = stripSlash(s.homeserverUrl);
    const host = new URL(hs).hostname;
    const synapseDown = `on the host: systemctl status ${SYNAPSE_SERVICE} nginx; journalctl -u ${SYNAPSE_SERVICE} -n 50`;
    const versions = async (): Promise<CheckResult> => {
        const id = "client versions";
        try {
            const res = await request(net, `${hs}/_matrix/client/versions`);
            const list = (parseJson(res.body) as { versions?: unknown } | undefined)?.versions;
            if (res.status === 200 && Array.isArray(list) && list.length > 0) {
                return pass(id, `${list.length} versions, up to ${String(list[list.length - 1])}`);
            }
            return fail(id, `HTTP ${res.status}, no versions list`, synapseDown);
        } catch (err) {
            return fail(id, describeError(err), reachFix(err, host, 443));
        }
    };
    const registration = async (): Promise<CheckResult> => {
        const id = "client registration";
        const want = s.enableRegistration ? "open" : "closed";
        try {
            const res = await request(net, `${hs}/_matrix/client/v3/register`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: "{}",
            });
            const body = parseJson(res.body) as { flows?: unknown; errcode?: unknown } | undefined;
            const open = res.status === 401 && Array.isArray(body?.flows) && body.flows.length > 0;
            const closed = res.status === 403 && body?.errcode === "M_FORBIDDEN";
            if (res.status === 429) return warn(id, "rate limited (HTTP 429)", "run the self-check again in a minute");
            if ((open && s.enableRegistration) || (closed && !s.enableRegistration)) {
                return pass(id, `${want}, as configured (HTTP ${res.status}${closed ? " M_FORBIDDEN" : ""})`);
            }
            const got = open ? "open" : closed ? "closed" : `HTTP ${res.status} ${text(body?.errcode)}`.trim();
            return fail(
                id,
                `${got}, but matrix:synapse.enableRegistration says ${want}`,
                open || closed
                    ? "run pulumi up (homeserver.yaml enable_registration); check matrix:synapse.extraConfig"
                    : synapseDown,
            );
        } catch (err) {
            return fail(id, describeError(err), reachFix(err, host, 443));
        }
    };
    const upload = async (): Promise<CheckResult> => {
        const id = "client upload";
        const bytes = uploadSizeBytes(s.maxUploadSize);
        const size = `${bytes} bytes (maxUploadSize ${s.maxUploadSize})`;
        try {
            const res = await request(net, `${hs}/_matrix/media/v3/upload`, {
                method: "POST",
                headers: { "content-type": "application/octet-stream" },
                body: { zeros: bytes },
            });
            const body = parseJson(res.body) as { errcode?: unknown } | undefined;
            if (res.status === 401 && body?.errcode === "M_MISSING_TOKEN") {
                return pass(id, `${size} reach Synapse (401 M_MISSING_TOKEN)`);
            }
            if (res.status === 413) {
                const fromSynapse = body?.errcode !== undefined;
                return fail(
                    id,
                    `${size}: 413 from ${fromSynapse ? `Synapse (${text(body?.errcode)})` : "nginx"}`,
                    `run pulumi up (${fromSynapse ? "Synapse's max_upload_size" : "nginx's client_max_body_size"} follows matrix:synapse.maxUploadSize)`,
                );
            }
            return fail(id, `${size}: HTTP ${res.status} ${text(body?.errcode)}`.trim(), synapseDown);
        } catch (err) {
            return fail(id, `${size}: ${describeError(err)}`, reachFix(err, host, 443));
        }
    };
    return Promise.all([versions(), registration(), upload()]);
}

// ---- 6. Element ----

export async function checkElement(
    net: Network,
    s: { elementUrl: string; homeserverUrl: string },
): Promise<CheckResult[]> {
    const el = stripSlash(s.elementUrl);
    const host = new URL(el).hostname;
    const redeploy = "run pulumi up (it rewrites Element's vhost and config.json)";
    let index: HttpResponse;
    let config: HttpResponse;
    try {
        [index, config] = await Promise.all([request(net, `${el}/`), request(net, `${el}/config.json`)]);
    } catch (err) {
        return [fail("element", `${el}: ${describeError(err)}`, reachFix(err, host, 443))];
    }
    const results: CheckResult[] = [];
    const base = (
        parseJson(config.body) as { default_server_config?: { "m.homeserver"?: { base_url?: unknown } } } | undefined
    )?.default_server_config?.["m.homeserver"]?.base_url;
    results.push(
        config.status === 200 && typeof base === "string" && stripSlash(base) === stripSlash(s.homeserverUrl)
            ? pass("element config", `config.json base_url ${base}`)
            : fail(
                  "element config",
                  config.status !== 200
                      ? `config.json: HTTP ${config.status}`
                      : `config.json base_url is ${JSON.stringify(base)}, not "${s.homeserverUrl}"`,
                  redeploy,
              ),
    );
    const expected = elementSecurityHeaders();
    const missing: string[] = [];
    const differing: string[] = [];
    for (const [path, res] of [
        ["/", index],
        ["/config.json", config],
    ] as const) {
        for (const [name, value] of Object.entries(expected)) {
            const got = rawHeaderValues(res, name);
            if (got.length === 0) missing.push(`${name} on ${path}`);
            else if (got.length > 1 || got[0] !== value) differing.push(`${name}: ${got.join(" | ")} on ${path}`);
        }
    }
    const names = Object.keys(expected).join(", ");
    results.push(
        missing.length > 0
            ? fail("element headers", `missing ${missing.join(", ")}`, redeploy)
            : differing.length > 0
              ? warn("element headers", `differ from the vhost's: ${differing.join(", ")}`, redeploy)
              : pass("element headers", names),
    );
    const cache = rawHeaderValues(index, "cache-control").join(", ");
    results.push(
        index.status === 200 && /\bno-(cache|store)\b/.test(cache)
            ? pass("element cache", `index.html: Cache-Control ${cache}`)
            : fail(
                  "element cache",
                  index.status !== 200
                      ? `index.html: HTTP ${index.status}`
                      : `index.html: Cache-Control ${cache || "absent"}: browsers keep an old Element after an upgrade`,
                  redeploy,
              ),
    );
    return results;
}

// ---- calls ----

/** A TCP connection to host:port opens (what a provider's firewall lets through), or why not. */
async function tcpOpens(net: Network, host: string, port: number): Promise<string | undefined> {
    const target = await dial(net, host, port);
    return new Promise((resolve) => {
        const socket = tcpConnect({ host: target.address, port: target.port });
        const done = (problem?: string) => {
            socket.destroy();
            resolve(problem);
        };
        socket.setTimeout(net.timeoutMs, () => done(`no answer within ${net.timeoutMs / 1000} s`));
        socket.once("connect", () => done());
        socket.once("error", (err) => done(describeError(err)));
    });
}

/**
 * matrix:rtc and matrix:turn as a caller meets them: the focus in the client well-known, both
 * services through nginx, and the TCP ports from outside (UDP cannot be probed without a call:
 * the README lists what to open).
 */
export async function checkCalls(
    net: Network,
    cfg: Pick<StackConfig, "rtc" | "turn" | "homeserverHost" | "delegation" | "domain">,
    now: number,
): Promise<CheckResult[]> {
    const host = cfg.homeserverHost;
    const providerFix = (port: number) =>
        `open TCP ${port} at your provider's firewall (security group); the host's own firewall opens it (run pulumi up)`;
    const open = async (id: string, port: number) => {
        try {
            const problem = await tcpOpens(net, host, port);
            return problem
                ? fail(id, `${host}:${port}: ${problem}`, providerFix(port))
                : pass(id, `${host}:${port} opens`);
        } catch (err) {
            return fail(id, `${host}:${port}: ${describeError(err)}`, reachFix(err, host, port));
        }
    };
    const checks: Promise<CheckResult>[] = [];
    if (cfg.rtc) {
        const { serviceUrl, sfuUrl } = rtcUrls(host);
        const redeploy = "run pulumi up (it starts the service and writes the vhost)";
        checks.push(
            (async () => {
                const where =
                    cfg.delegation === "none"
                        ? `https://${host}/.well-known/matrix/client`
                        : `https://${cfg.domain}/.well-known/matrix/client`;
                try {
                    const doc = parseJson((await request(net, where)).body) as Record<string, unknown> | undefined;
                    const foci = doc?.["org.matrix.msc4143.rtc_foci"] as
                        { livekit_service_url?: unknown }[] | undefined;
                    return foci?.some((f) => f.livekit_service_url === serviceUrl)
                        ? pass("calls focus", `${where} names ${serviceUrl}`)
                        : fail(
                              "calls focus",
                              `${where} has no LiveKit focus at ${serviceUrl}: Element Call finds no backend (MISSING_MATRIX_RTC_FOCUS)`,
                              cfg.delegation === "external"
                                  ? "publish the stack output wellKnown.client again"
                                  : redeploy,
                          );
                } catch (err) {
                    return fail(
                        "calls focus",
                        `${where}: ${describeError(err)}`,
                        reachFix(err, new URL(where).hostname, 443),
                    );
                }
            })(),
            (async () => {
                try {
                    const r = await request(net, `${serviceUrl}/healthz`);
                    return r.status === 200
                        ? pass("calls authorisation", `${serviceUrl}/healthz: 200`)
                        : fail("calls authorisation", `${serviceUrl}/healthz: HTTP ${r.status}`, redeploy);
                } catch (err) {
                    return fail(
                        "calls authorisation",
                        `${serviceUrl}: ${describeError(err)}`,
                        reachFix(err, host, 443),
                    );
                }
            })(),
            (async () => {
                const url = `${sfuUrl.replace(/^wss:/, "https:")}/`;
                try {
                    const r = await request(net, url);
                    return r.status === 200 && r.body.toString("utf8").trim() === "OK"
                        ? pass("calls sfu", `${url}: OK`)
                        : fail("calls sfu", `${url}: HTTP ${r.status}`, redeploy);
                } catch (err) {
                    return fail("calls sfu", `${url}: ${describeError(err)}`, reachFix(err, host, 443));
                }
            })(),
            open("calls ice/tcp", cfg.rtc.tcpPort),
        );
    }
    if (cfg.turn) {
        checks.push(open("calls turn/tcp", cfg.turn.port), checkTls(net, host, now, cfg.turn.tlsPort));
    }
    return Promise.all(checks);
}

// ---- all of it ----

/** The deployed outputs agree with the config: otherwise the config changed since the last `pulumi up`. */
export function checkStackOutputs(cfg: StackConfig, o: StackOutputs): CheckResult {
    const differ: string[] = [];
    if (o.serverName !== cfg.domain) differ.push(`serverName ${o.serverName} (config: ${cfg.domain})`);
    if (stripSlash(o.homeserverUrl) !== `https://${cfg.homeserverHost}`) {
        differ.push(`homeserverUrl ${o.homeserverUrl} (config: https://${cfg.homeserverHost})`);
    }
    if (stripSlash(o.elementUrl) !== `https://${cfg.elementHost}`) {
        differ.push(`elementUrl ${o.elementUrl} (config: https://${cfg.elementHost})`);
    }
    if (o.delegation !== cfg.delegation) differ.push(`delegation ${o.delegation} (config: ${cfg.delegation})`);
    return differ.length > 0
        ? fail("stack", `deployed ${differ.join(", ")}`, "run pulumi up (the config changed since the last deployment)")
        : pass(
              "stack",
              `${o.serverName}: homeserver ${o.homeserverUrl}, Element ${o.elementUrl}, delegation ${o.delegation}`,
          );
}

/** A group's unexpected exception as a failed line, so one bug does not hide the other checks. */
async function guarded(id: string, run: () => Promise<CheckResult[]>): Promise<CheckResult[]> {
    try {
        return await run();
    } catch (err) {
        return [fail(id, `the check itself failed: ${describeError(err)}`, "report this as a bug of matrix-pulumi")];
    }
}

/**
 * Every check, started at once, as groups in the order they are reported (await them in turn to
 * print as they complete). Nothing is printed.
 */
export function startSelfCheck(target: SelfCheckTarget, o: SelfCheckOptions = {}): Promise<CheckResult[]>[] {
    const { cfg, outputs } = target;
    const net = makeNetwork(o);
    const now = o.now ?? Date.now;
    const exec = o.exec ?? ((c: SshConnection, command: string) => sshExec(c, command));
    const names = publicHostnames(cfg);
    const hosts = Object.values(names.certificates);
    const managed = new Set(Object.values(names.dnsRecords));
    const dnsFix = (name: string) =>
        managed.has(name)
            ? "run pulumi up (matrix:dns manages this record); check the Cloudflare zone for a conflicting record"
            : `at your DNS provider: ${name} A ${cfg.machine.ipv4}${cfg.machine.ipv6 ? ` and AAAA ${cfg.machine.ipv6}` : ""} (stack output dnsRecordsToCreate)`;
    const connection = (m: StackConfig["machine"]): SshConnection => ({
        host: m.ipv4,
        port: m.sshPort,
        user: m.sshUser,
        privateKey: target.sshPrivateKey,
        hostKey: m.sshHostKey,
    });
    const timeoutSeconds = net.timeoutMs / 1000;
    const hostOpts = { exec, timeoutMs: net.timeoutMs };
    return [
        Promise.resolve([checkStackOutputs(cfg, outputs)]),
        guarded("dns", () => Promise.all(hosts.map((h) => checkDns(net, h, cfg.machine, dnsFix(h))))),
        ...hosts.map((h) => guarded(`tls ${h}`, () => Promise.all([checkTls(net, h, now()), checkLegacyTls(net, h)]))),
        guarded("well-known", () =>
            checkWellKnown(net, {
                serverName: outputs.serverName,
                homeserverHost: cfg.homeserverHost,
                homeserverUrl: outputs.homeserverUrl,
                delegation: cfg.delegation,
            }),
        ),
        guarded("federation", () => checkFederation(net, outputs.serverName, now(), cfg.delegation)),
        guarded("client", () =>
            checkClientApi(net, {
                homeserverUrl: outputs.homeserverUrl,
                enableRegistration: cfg.synapse.enableRegistration,
                maxUploadSize: cfg.synapse.maxUploadSize,
            }),
        ),
        guarded("element", () =>
            checkElement(net, { elementUrl: outputs.elementUrl, homeserverUrl: outputs.homeserverUrl }),
        ),
        ...(cfg.rtc || cfg.turn ? [guarded("calls", () => checkCalls(net, cfg, now()))] : []),
        guarded("ssh", () =>
            checkHost(connection(cfg.machine), hostProbe(cfg, "homeserver", timeoutSeconds), {
                ...hostOpts,
                preflight: preflightSettings(cfg, "homeserver"),
            }),
        ),
        ...(cfg.database
            ? [
                  guarded("ssh database", () =>
                      checkHost(connection(cfg.database!.machine), hostProbe(cfg, "database", timeoutSeconds), {
                          ...hostOpts,
                          label: " (database host)",
                          preflight: preflightSettings(cfg, "database"),
                      }),
                  ),
              ]
            : []),
    ];
}

/** Every check's results, in report order. */
export async function runSelfCheck(target: SelfCheckTarget, o: SelfCheckOptions = {}): Promise<CheckResult[]> {
    return (await Promise.all(startSelfCheck(target, o))).flat();
}
