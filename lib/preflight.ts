// The preflight: reads a host as found (render/preflight.ts) before any resource is registered,
// in `pulumi preview` as in `pulumi up`, and refuses with one line per problem and its fix.
// It also decides the one PostgreSQL cluster the program manages and reads its real port.
import { spawnSync } from "node:child_process";
import { renderPreflightScript } from "../render/preflight";
import { sshArgs, type SshConnection } from "./ssh";

/** The hosts the program knows: each release's PostgreSQL major (its `main` cluster) and Python. */
export const SUPPORTED_HOSTS = [
    { id: "debian", version: "12", name: "Debian 12 (bookworm)", postgres: "15", python: "3.11", tested: true },
    { id: "debian", version: "13", name: "Debian 13 (trixie)", postgres: "17", python: "3.13", tested: true },
    { id: "ubuntu", version: "24.04", name: "Ubuntu 24.04", postgres: "16", python: "3.12", tested: false },
] as const;
export type SupportedHost = (typeof SUPPORTED_HOSTS)[number];

/**
 * The CPU architectures (dpkg's names) Synapse's binary wheels are published for. CI deploys to
 * amd64 only; arm64 is let through with a warning.
 */
export const SUPPORTED_ARCHES = [
    { arch: "amd64", tested: true },
    { arch: "arm64", tested: false },
] as const;

/** What Synapse and PostgreSQL need of a host (Synapse's own guide: 1 GB of memory for a small server). */
export const HOST_MINIMUM = { diskKb: 4 * 1024 * 1024, memoryKb: 900 * 1024 } as const;
/** How long a deploy waits for another process to release apt's lock. */
export const APT_LOCK_WAIT_SECONDS = 300;

export interface HostFacts {
    os: { id: string; version: string; name: string };
    pid1: string;
    /** dpkg's architecture ("amd64", "arm64"), or uname's machine where dpkg is missing. */
    arch: string;
    diskKb: number;
    memoryKb: number;
    aptLocks: { pid: number; name: string }[];
    firewalls: string[];
    listeners: { port: number; process: string }[];
    nginxSites: { file: string; name: string }[];
    clusters: PostgresClusterFacts[];
    /** Clusters ("15/main") where the stack's database exists. */
    databaseIn: string[];
    /** TCP ports 5432–5499 something listens on. */
    postgresListeners: number[];
    /** What the host's systemd-analyze said of the backup schedule, when it could not parse it. */
    calendarError?: string;
    /** Whether Matrix Authentication Service was set up here (its config file exists). */
    mas?: boolean;
}

export interface PostgresClusterFacts {
    version: string;
    name: string;
    port: number;
    status: string;
}

/** The cluster the program manages: `<the release's major>/main`, its port as found or as Debian will pick it. */
export interface PostgresCluster {
    version: string;
    name: string;
    port: number;
}

export function parseFacts(text: string): HostFacts {
    const facts: HostFacts = {
        os: { id: "unknown", version: "unknown", name: "unknown" },
        pid1: "unknown",
        arch: "unknown",
        diskKb: 0,
        memoryKb: 0,
        aptLocks: [],
        firewalls: [],
        listeners: [],
        nginxSites: [],
        clusters: [],
        databaseIn: [],
        postgresListeners: [],
    };
    for (const line of text.split("\n")) {
        const tab = line.indexOf("\t");
        if (tab < 0) continue;
        const key = line.slice(0, tab);
        const value = line.slice(tab + 1).trim();
        const words = value.split(/\s+/);
        switch (key) {
            case "os":
                facts.os = { ...facts.os, id: words[0] ?? "unknown", version: words[1] ?? "unknown" };
                break;
            case "os.name":
                facts.os.name = value;
                break;
            case "pid1":
                facts.pid1 = value;
                break;
            case "arch":
                facts.arch = value;
                break;
            case "disk.kb":
                facts.diskKb = Number(value) || 0;
                break;
            case "memory.kb":
                facts.memoryKb = Number(value) || 0;
                break;
            case "apt.lock":
                facts.aptLocks.push({ pid: Number(words[0]), name: words.slice(1).join(" ") });
                break;
            case "firewall":
                facts.firewalls.push(value);
                break;
            case "listen":
                facts.listeners.push({ port: Number(words[0]), process: words[1] ?? "unknown" });
                break;
            case "nginx.site":
                facts.nginxSites.push({ file: words[0]!, name: words[1] ?? "" });
                break;
            case "pg.cluster":
                facts.clusters.push({
                    version: words[0]!,
                    name: words[1]!,
                    port: Number(words[2]),
                    status: words[3] ?? "unknown",
                });
                break;
            case "pg.database":
                facts.databaseIn.push(value);
                break;
            case "pg.listen":
                facts.postgresListeners.push(Number(value));
                break;
            case "calendar.error":
                facts.calendarError = value;
                break;
            case "mas":
                facts.mas = true;
                break;
        }
    }
    return facts;
}

/** What the judge needs of the stack for one host. */
export interface PreflightSettings {
    /** Config key the host comes from, named in every problem ("matrix:machine"). */
    key: string;
    /** Whether PostgreSQL (Synapse's database) runs on this host, and its name. */
    postgres?: { database: string };
    /** Whether this host serves nginx (80, 443) and which names. */
    web?: { names: string[] };
    /**
     * Release files the host downloads that are built for amd64 only (the calls' default
     * `linux_amd64` downloads): the config key of each, refused on any other architecture.
     */
    amd64Downloads?: string[];
    /** Whether the program manages the host's firewall (matrix:firewall.enabled). */
    firewall: boolean;
    /** The backup timer's OnCalendar (matrix:backup.schedule), checked by the host's own systemd. */
    backupSchedule?: string;
    /**
     * matrix:auth as the stack has it: on, or off (absent, or `enabled: false`) and whether
     * `allowDisable` lets it take MAS away from a host where it ran.
     */
    auth?: { on: boolean; allowDisable: boolean };
    /** A preview: apt's lock is a warning (the deploy would wait for it), not a wait. */
    dryRun?: boolean;
    /** How long an up waits for apt's lock. Default: APT_LOCK_WAIT_SECONDS. */
    aptLockWaitSeconds?: number;
}

export interface PreflightResult {
    problems: string[];
    warnings: string[];
    host?: SupportedHost;
    cluster?: PostgresCluster;
}

const kb = (n: number) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} GiB` : `${Math.round(n / 1024)} MiB`);

/** The judge: every problem of a host, each with its fix; the cluster to use where PostgreSQL runs. */
export function judgeHost(f: HostFacts, s: PreflightSettings): PreflightResult {
    const problems: string[] = [];
    const warnings: string[] = [];
    const at = s.key;
    const host = SUPPORTED_HOSTS.find((h) => h.id === f.os.id && h.version === f.os.version);
    if (!host) {
        problems.push(
            `${at}: the host runs ${f.os.name} (${f.os.id} ${f.os.version}); the program supports ${SUPPORTED_HOSTS.filter(
                (h) => h.tested,
            )
                .map((h) => h.name)
                .join(" and ")}: install one of them on the server`,
        );
    } else if (!host.tested) {
        warnings.push(`${at}: ${host.name} is not tested by this program's CI (Debian 12 and 13 are)`);
    }
    if (f.pid1 !== "systemd") {
        problems.push(
            `${at}: process 1 is ${f.pid1}, not systemd; the program runs its services as systemd units: use a server (or VM) booted with systemd`,
        );
    }
    const arch = SUPPORTED_ARCHES.find((a) => a.arch === f.arch);
    if (!arch) {
        problems.push(
            `${at}: the host's architecture is ${f.arch}; the program installs Synapse's binary wheels, published for ${SUPPORTED_ARCHES.map((a) => a.arch).join(" and ")}: use an x86-64 or 64-bit ARM server`,
        );
    } else if (!arch.tested) {
        warnings.push(`${at}: ${arch.arch} hosts are not tested by this program's CI (amd64 is)`);
    }
    if (arch && f.arch !== "amd64" && (s.amd64Downloads ?? []).length > 0) {
        problems.push(
            `${at}: the host is ${f.arch}, and ${s.amd64Downloads!.join(" and ")} download${s.amd64Downloads!.length === 1 ? "s" : ""} the \`linux_amd64\` release file by default: set \`url\` and \`sha256\` there to the \`linux_${f.arch}\` release file, or turn calls off (matrix:rtc.enabled false)`,
        );
    }
    if (f.diskKb < HOST_MINIMUM.diskKb) {
        problems.push(
            `${at}: ${kb(f.diskKb)} free for /var/lib; Synapse, PostgreSQL and their backups need at least ${kb(HOST_MINIMUM.diskKb)}: free space or grow the disk`,
        );
    }
    if (f.memoryKb < HOST_MINIMUM.memoryKb) {
        problems.push(
            `${at}: ${kb(f.memoryKb)} of memory; Synapse and PostgreSQL need at least 1 GiB: use a larger server`,
        );
    }
    for (const lock of f.aptLocks) {
        if (s.dryRun) {
            warnings.push(
                `${at}: apt's lock is held by ${lock.name} (pid ${lock.pid}); \`pulumi up\` waits up to ${APT_LOCK_WAIT_SECONDS} s for it`,
            );
            continue;
        }
        problems.push(
            `${at}: apt's lock is held by ${lock.name} (pid ${lock.pid}) and was not released within ${s.aptLockWaitSeconds ?? APT_LOCK_WAIT_SECONDS} s: let it finish (on a new server, unattended-upgrades' first run), or stop it, then run again`,
        );
    }
    if (s.firewall) {
        for (const fw of f.firewalls) {
            problems.push(
                `${at}: ${fw} is active, and matrix:firewall.enabled has the program manage the firewall (nftables) too: ` +
                    (fw === "ufw" ? "`ufw disable`" : "`systemctl disable --now firewalld`") +
                    ", or set matrix:firewall.enabled to false and open 80 and 443 (and SSH) in " +
                    fw,
            );
        }
    }
    if (s.web) {
        for (const l of f.listeners.filter((x) => x.process !== "nginx")) {
            problems.push(
                `${at}: port ${l.port} is held by ${l.process}, not nginx; the program serves ACME and Matrix there: stop and disable ${l.process} (or move it to another port)`,
            );
        }
        for (const site of f.nginxSites.filter((x) => s.web!.names.includes(x.name))) {
            problems.push(
                `${at}: the nginx site ${site.file} claims ${site.name}, which the program serves: remove that server_name (or the site) so the two do not answer for one name`,
            );
        }
    }
    if (s.backupSchedule !== undefined && f.calendarError !== undefined) {
        problems.push(
            `matrix:backup.schedule: the host's systemd cannot parse "${s.backupSchedule}" (${f.calendarError}): use an OnCalendar expression such as "daily" or "*-*-* 03:30" (\`systemd-analyze calendar '…'\` checks one)`,
        );
    }
    if (s.auth && !s.auth.on && f.mas && !s.auth.allowDisable) {
        problems.push(
            "matrix:auth: Matrix Authentication Service runs on this host and holds every account's password and session (Synapse's own password login is off since MAS took over), so turning it off would lock everyone out: keep matrix:auth.enabled true; to go back to Synapse's logins knowingly (README: Auth (MAS)), set matrix:auth.enabled false and matrix:auth.allowDisable true",
        );
    }
    let cluster: PostgresCluster | undefined;
    if (s.postgres && host) {
        const version = host.postgres;
        const found = f.clusters.find((c) => c.version === version && c.name === "main");
        const elsewhere = f.databaseIn.filter((c) => c !== `${version}/main`);
        if (elsewhere.length > 0 && !f.databaseIn.includes(`${version}/main`)) {
            const from = elsewhere[0]!;
            const old = f.clusters.find((c) => `${c.version}/${c.name}` === from);
            const [fromVersion = "", fromName = ""] = from.split("/");
            const dropFirst = found
                ? `\`pg_dropcluster ${version} main --stop\` (if it holds nothing of yours), then `
                : "";
            // An older major: Debian's upgrade. The same major: a rename. A newer one: a dump.
            const move =
                Number(fromVersion) < Number(version)
                    ? `, as Debian's upgrade does: ${dropFirst}\`pg_upgradecluster ${fromVersion} ${fromName}\``
                    : fromVersion === version
                      ? `: ${dropFirst}\`pg_renamecluster ${fromVersion} ${fromName} main\``
                      : ` with \`pg_dump -Fc --cluster ${from}\` and \`pg_restore --cluster ${version}/main\` (PostgreSQL ${fromVersion} is newer than ${host.name}'s)`;
            problems.push(
                `matrix:postgres.database: the database ${s.postgres.database} is in PostgreSQL cluster ${from}` +
                    (old ? ` (port ${old.port})` : "") +
                    `, but on ${host.name} the program uses cluster ${version}/main; move it there first${move}, then run again`,
            );
        }
        if (found) {
            cluster = { version, name: "main", port: found.port };
        } else {
            // Not created yet: Debian's pg_createcluster takes the first port from 5432 up that no
            // cluster is configured with and nothing listens on. The install step checks it did.
            const taken = new Set([...f.clusters.map((c) => c.port), ...f.postgresListeners]);
            let port = 5432;
            while (taken.has(port)) port++;
            cluster = { version, name: "main", port };
        }
        const others = f.clusters.filter((c) => !(c.version === version && c.name === "main"));
        if (others.length > 0) {
            warnings.push(
                `${at}: PostgreSQL cluster${others.length === 1 ? "" : "s"} ${others.map((c) => `${c.version}/${c.name} (port ${c.port})`).join(", ")} left alone; Synapse's database is in ${version}/main (port ${cluster.port})`,
            );
        }
    }
    return { problems, warnings, host, cluster };
}

/** Raised when a host fails its preflight: every problem, one line each, nothing deployed. */
export class PreflightError extends Error {
    constructor(readonly problems: string[]) {
        super(
            `The host is not ready (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was deployed:\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "PreflightError";
    }
}

/** Runs the preflight script over SSH, synchronously (before the program registers anything). */
export type FactsReader = (connection: SshConnection, script: string) => string;

/** The real reader: the script over SSH, as the program runs it. */
export const readFactsOverSsh: FactsReader = (connection, script) => {
    const ssh = sshArgs(connection, "ConnectTimeout=15", "ServerAliveInterval=15");
    try {
        const r = spawnSync("ssh", ["-q", ...ssh.args, "--", script], { encoding: "utf8", timeout: 120_000 });
        if (r.error) throw r.error;
        if (r.status !== 0) {
            const where = `${connection.user ?? "root"}@${connection.host}:${connection.port ?? 22}`;
            throw new Error(`could not read the host ${where} over SSH (exit ${r.status}): ${r.stderr.trim()}`);
        }
        return r.stdout;
    } finally {
        ssh.cleanup();
    }
};
let reader: FactsReader = readFactsOverSsh;

/** Replace how facts are read (the mock-runtime harness serves canned facts). */
export function setFactsReader(r: FactsReader): void {
    reader = r;
}

/** The preflight script for these settings, as `user` runs it (the deploy and the self-check alike). */
export function preflightScript(s: PreflightSettings, user?: string): string {
    return renderPreflightScript({ database: s.postgres?.database, calendar: s.backupSchedule }, { user });
}

/**
 * Read and judge a host; while another process holds apt's lock, read it again every 5 s, up to
 * APT_LOCK_WAIT_SECONDS. `log` gets a line per wait and each warning.
 */
export function preflight(
    connection: SshConnection,
    s: PreflightSettings,
    log: (line: string, severity: "info" | "warning") => void = () => undefined,
): PreflightResult {
    const script = preflightScript(s, connection.user);
    const deadline = Date.now() + (s.aptLockWaitSeconds ?? APT_LOCK_WAIT_SECONDS) * 1000;
    let facts = parseFacts(reader(connection, script));
    while (!s.dryRun && facts.aptLocks.length > 0 && Date.now() < deadline) {
        log(
            `${s.key}: waiting for apt's lock, held by ${facts.aptLocks.map((l) => `${l.name} (pid ${l.pid})`).join(", ")}`,
            "info",
        );
        spawnSync("sleep", [String(Math.min(5, Math.max(1, Math.ceil((deadline - Date.now()) / 1000))))]);
        facts = parseFacts(reader(connection, script));
    }
    const result = judgeHost(facts, s);
    for (const w of result.warnings) log(w, "warning");
    return result;
}
