// The preflight's judge on its own (pure): host facts as render/preflight.ts prints them, in; every
// problem with its fix, and the PostgreSQL cluster the program uses, out. Each refusal is planted
// on a real host by the hardening suite; here each one is checked against the facts alone, and
// the program run under mocks shows a refusal stops it before any resource.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { judgeHost, parseFacts, type PreflightSettings } from "../../lib/preflight";
import { HOST_FACTS } from "../harness/program";
import { allStrings, baseConfig, byName, names, runProgramSoon } from "../harness/run";

const WEB = ["matrix.example.org", "element.example.org", "example.org"];
const settings: PreflightSettings = {
    key: "matrix:machine",
    web: { names: WEB },
    firewall: true,
    postgres: { database: "synapse" },
};
/** A new server as HOST_FACTS describes it, with `lines` replacing its facts of the same keys. */
const facts = (...lines: string[]) => {
    const keys = new Set(lines.map((l) => l.split("\t")[0]));
    return parseFacts([...HOST_FACTS.split("\n").filter((l) => !keys.has(l.split("\t")[0])), ...lines].join("\n"));
};
const judge = (f: ReturnType<typeof facts>, s: Partial<PreflightSettings> = {}) => judgeHost(f, { ...settings, ...s });

describe("preflight: the judge", () => {
    it("passes a new Debian 12 server and picks its 15/main on the port it is on", () => {
        const r = judge(facts());
        assert.deepEqual(r.problems, []);
        assert.deepEqual(r.cluster, { version: "15", name: "main", port: 5432 });
    });

    it("refuses a release it does not know, naming what it found and what it supports", () => {
        const r = judge(facts("os\tdebian 11", "os.name\tDebian GNU/Linux 11 (bullseye)"));
        assert.deepEqual(r.problems, [
            "matrix:machine: the host runs Debian GNU/Linux 11 (bullseye) (debian 11); the program supports Debian 12 (bookworm) and Debian 13 (trixie): install one of them on the server",
        ]);
    });

    it("warns, without refusing, on Ubuntu 24.04, which CI does not run", () => {
        const r = judge(facts("os\tubuntu 24.04", "pg.cluster\t16 main 5432 online"));
        assert.deepEqual(r.problems, []);
        assert.match(r.warnings.join("\n"), /Ubuntu 24\.04 is not tested/);
        assert.equal(r.cluster?.version, "16");
    });

    it("refuses an architecture Synapse's wheels are not published for, and warns on arm64, which CI does not run", () => {
        assert.deepEqual(judge(facts("arch\tarmhf")).problems, [
            "matrix:machine: the host's architecture is armhf; the program installs Synapse's binary wheels, published for amd64 and arm64: use an x86-64 or 64-bit ARM server",
        ]);
        const arm = judge(facts("arch\tarm64"));
        assert.deepEqual(arm.problems, []);
        assert.match(arm.warnings.join("\n"), /arm64 hosts are not tested/);
    });

    it("refuses to take MAS off a host where it ran, unless matrix:auth.allowDisable says so", () => {
        const ran = facts("mas\tinstalled");
        const problems = (auth: PreflightSettings["auth"]) => judge(ran, { auth }).problems;
        assert.deepEqual(problems({ on: true, allowDisable: false }), []);
        const refused = problems({ on: false, allowDisable: false });
        assert.equal(refused.length, 1);
        assert.match(
            refused[0]!,
            /^matrix:auth: Matrix Authentication Service runs on this host .* lock everyone out: .*matrix:auth\.allowDisable true$/,
        );
        assert.deepEqual(problems({ on: false, allowDisable: true }), []);
        // A host MAS never ran on: nothing to refuse.
        assert.deepEqual(judge(facts(), { auth: { on: false, allowDisable: false } }).problems, []);
    });

    it("refuses the calls' default linux_amd64 downloads on an arm64 host, naming the keys to set", () => {
        const calls = { amd64Downloads: ["matrix:rtc.livekit", "matrix:rtc.jwtService"] };
        assert.deepEqual(judge(facts("arch\tarm64"), calls).problems, [
            "matrix:machine: the host is arm64, and matrix:rtc.livekit and matrix:rtc.jwtService download the `linux_amd64` release file by default: set `url` and `sha256` there to the `linux_arm64` release file, or turn calls off (matrix:rtc.enabled false)",
        ]);
        assert.deepEqual(judge(facts("arch\tamd64"), calls).problems, []);
    });

    it("refuses a host whose process 1 is not systemd", () => {
        assert.match(judge(facts("pid1\tsh")).problems.join("\n"), /process 1 is sh, not systemd/);
    });

    it("refuses too little disk or memory, with the figures", () => {
        assert.deepEqual(judge(facts(`disk.kb\t${1024 * 1024}`, `memory.kb\t${512 * 1024}`)).problems, [
            "matrix:machine: 1.0 GiB free for /var/lib; Synapse, PostgreSQL and their backups need at least 4.0 GiB: free space or grow the disk",
            "matrix:machine: 512 MiB of memory; Synapse and PostgreSQL need at least 1 GiB: use a larger server",
        ]);
    });

    it("names the process holding apt's lock: a refusal in an up (after its wait), a warning in a preview", () => {
        const f = facts("apt.lock\t4242 unattended-upgr");
        assert.match(
            judge(f).problems.join("\n"),
            /apt's lock is held by unattended-upgr \(pid 4242\) and was not released within 300 s/,
        );
        const preview = judge(f, { dryRun: true });
        assert.deepEqual(preview.problems, []);
        assert.match(preview.warnings.join("\n"), /`pulumi up` waits up to 300 s/);
    });

    it("refuses ufw or firewalld beside the managed firewall, and not when the firewall is not managed", () => {
        const f = facts("firewall\tufw", "firewall\tfirewalld");
        const lines = judge(f).problems;
        assert.equal(lines.length, 2);
        assert.match(lines[0]!, /ufw is active.*`ufw disable`, or set matrix:firewall\.enabled to false/);
        assert.match(lines[1]!, /firewalld is active.*`systemctl disable --now firewalld`/);
        assert.deepEqual(judge(f, { firewall: false }).problems, []);
    });

    it("refuses 80 or 443 held by another server, not by nginx", () => {
        const r = judge(facts("listen\t80 apache2", "listen\t443 nginx"));
        assert.deepEqual(r.problems, [
            "matrix:machine: port 80 is held by apache2, not nginx; the program serves ACME and Matrix there: stop and disable apache2 (or move it to another port)",
        ]);
    });

    it("refuses another nginx site that claims one of the program's names, not one for other names", () => {
        const r = judge(
            facts(
                "nginx.site\t/etc/nginx/sites-enabled/old matrix.example.org",
                "nginx.site\t/etc/nginx/sites-enabled/blog blog.example.org",
            ),
        );
        assert.deepEqual(r.problems, [
            "matrix:machine: the nginx site /etc/nginx/sites-enabled/old claims matrix.example.org, which the program serves: remove that server_name (or the site) so the two do not answer for one name",
        ]);
    });

    it("uses the cluster's real port when the host's only cluster is not on 5432", () => {
        const r = judge(facts("pg.cluster\t15 main 5433 online", "pg.database\t15/main"));
        assert.deepEqual(r.problems, []);
        assert.deepEqual(r.cluster, { version: "15", name: "main", port: 5433 });
    });

    it("predicts the port Debian will give a new cluster: the first from 5432 no cluster has and nothing listens on", () => {
        const bare = parseFacts(
            HOST_FACTS.split("\n")
                .filter((l) => !l.startsWith("pg."))
                .join("\n"),
        );
        assert.equal(judge(bare).cluster?.port, 5432);
        assert.equal(judge({ ...bare, postgresListeners: [5432] }).cluster?.port, 5433);
        assert.equal(
            judge({
                ...bare,
                clusters: [{ version: "13", name: "main", port: 5432, status: "down" }],
                postgresListeners: [5433],
            }).cluster?.port,
            5434,
        );
    });

    it("on Debian 13 with Debian 12's cluster left on 5432: uses 17/main on its port, leaves 15/main alone and says so", () => {
        const r = judge(facts("os\tdebian 13", "pg.cluster\t15 main 5432 online", "pg.cluster\t17 main 5433 online"));
        assert.deepEqual(r.problems, []);
        assert.deepEqual(r.cluster, { version: "17", name: "main", port: 5433 });
        assert.match(
            r.warnings.join("\n"),
            /cluster 15\/main \(port 5432\) left alone; Synapse's database is in 17\/main \(port 5433\)/,
        );
    });

    it("refuses when Synapse's database is in that older cluster, with Debian's upgrade as the fix", () => {
        const r = judge(
            facts(
                "os\tdebian 13",
                "pg.cluster\t15 main 5432 online",
                "pg.cluster\t17 main 5433 online",
                "pg.database\t15/main",
            ),
        );
        assert.deepEqual(r.problems, [
            "matrix:postgres.database: the database synapse is in PostgreSQL cluster 15/main (port 5432), but on Debian 13 (trixie) the program uses cluster 17/main; move it there first, as Debian's upgrade does: `pg_dropcluster 17 main --stop` (if it holds nothing of yours), then `pg_upgradecluster 15 main`, then run again",
        ]);
    });

    it("refuses a backup schedule the host's systemd could not parse, quoting what it said", () => {
        const f = facts("calendar.error\tFailed to parse calendar specification 'at 3': Invalid argument");
        assert.deepEqual(judge(f, { backupSchedule: "at 3" }).problems, [
            'matrix:backup.schedule: the host\'s systemd cannot parse "at 3" (Failed to parse calendar specification \'at 3\': Invalid argument): use an OnCalendar expression such as "daily" or "*-*-* 03:30" (`systemd-analyze calendar \'…\'` checks one)',
        ]);
    });

    it("names the move for each kind of cluster the database is in: a rename for the same major, a dump for a newer one", () => {
        const same = judge(
            facts("pg.cluster\t15 main 5432 online", "pg.cluster\t15 old 5434 online", "pg.database\t15/old"),
        );
        assert.match(
            same.problems[0]!,
            /is in PostgreSQL cluster 15\/old \(port 5434\), but on Debian 12 \(bookworm\) the program uses cluster 15\/main; move it there first: `pg_dropcluster 15 main --stop` \(if it holds nothing of yours\), then `pg_renamecluster 15 old main`, then run again$/,
        );
        const newer = judge(facts("pg.cluster\t17 main 5433 online", "pg.database\t17/main"));
        assert.match(
            newer.problems[0]!,
            /move it there first with `pg_dump -Fc --cluster 17\/main` and `pg_restore --cluster 15\/main` \(PostgreSQL 17 is newer than Debian 12 \(bookworm\)'s\), then run again$/,
        );
    });

    it("reads no cluster on a host without PostgreSQL's role (Synapse's host with matrix:database)", () => {
        const r = judge(facts(), { postgres: undefined });
        assert.equal(r.cluster, undefined);
    });
});

describe("preflight: the program", () => {
    const cfg = baseConfig({ "matrix:monitoring": { enabled: true } });
    const on5433 = HOST_FACTS.replace("15 main 5432", "15 main 5433");
    const moved = runProgramSoon(cfg, { hostFacts: { "203.0.113.10": on5433 } });
    const refused = runProgramSoon(cfg, {
        hostFacts: { "203.0.113.10": `${HOST_FACTS}pid1\tinit\nlisten\t443 apache2\n` },
    });

    it("gives Synapse, the exporter and every psql the cluster's real port", async () => {
        const r = await moved;
        assert.equal(r.error, undefined);
        const secrets = allStrings(byName(r, "synapse-secrets-yaml").inputs.content).join("");
        assert.match(secrets, /port: 5433\n/);
        assert.match(
            String(byName(r, "monitoring-postgres-dropin").inputs.content),
            /host=\/run\/postgresql port=5433 /,
        );
        const install = String(byName(r, "postgres-install").inputs.create);
        assert.match(install, /--cluster '\\''15\/main'\\''/);
        assert.match(install, /show port\)/);
    });

    // Calls on an arm64 host: refused with the default linux_amd64 downloads, let through with both set.
    const SHA = "a".repeat(64);
    const release = (version: string, url?: string) => ({ version, sha256: SHA, ...(url ? { url } : {}) });
    const onArm = { hostFacts: { "203.0.113.10": HOST_FACTS.replace("arch\tamd64", "arch\tarm64") } };
    const armCalls = runProgramSoon(
        baseConfig({ "matrix:rtc": { livekit: release("1.13.5"), jwtService: release("0.5.0") } }),
        onArm,
    );
    const armCallsOwnFiles = runProgramSoon(
        baseConfig({
            "matrix:rtc": {
                livekit: release("1.13.5", "https://mirror.example.org/livekit_1.13.5_linux_arm64.tar.gz"),
                jwtService: release("0.5.0", "https://mirror.example.org/lk-jwt-service_linux_arm64"),
            },
        }),
        onArm,
    );

    it("refuses calls' amd64 downloads on an arm64 host before any resource, and takes arm64 files", async () => {
        const r = await armCalls;
        assert.match(r.error ?? "", /the host is arm64, and matrix:rtc\.livekit and matrix:rtc\.jwtService download/);
        assert.deepEqual(names(r, "command:remote:Command"), []);
        const own = await armCallsOwnFiles;
        assert.equal(own.error, undefined);
        assert.notDeepEqual(names(own, "command:remote:Command"), []);
    });

    it("stops before any resource when the host fails, every problem in the message", async () => {
        const r = await refused;
        assert.match(r.error ?? "", /The host is not ready \(2 problems\); nothing was deployed/);
        assert.match(r.error ?? "", /process 1 is init, not systemd/);
        assert.match(r.error ?? "", /port 443 is held by apache2, not nginx/);
        assert.deepEqual(names(r, "command:remote:Command"), []);
    });
});
