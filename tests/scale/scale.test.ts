// Scale-out on two real hosts, deployed by the real Pulumi CLI: Synapse with the "small" workers
// (Redis, a template unit per worker, nginx routes) on one, PostgreSQL on the other
// (matrix:database: TLS, Synapse's address alone); a real client whose requests must reach the
// workers (each worker's own journal says so), backups and a restore against the remote
// database, an upgrade with workers, a restored worker file, the way back to one process, and a
// destroy that keeps the data on the database host. Needs root and `npm run tools:pulumi`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { databaseHostPackages, hostPackages } from "../../render/packages";
import { workerList, WORKER_PRESETS } from "../../render/workers";
import type { Run } from "../../lab/pulumi";
import {
    CACHE,
    ctx,
    deploy,
    explainFailure,
    get,
    lastMessages,
    matrixClient,
    NEW_SYNAPSE,
    OLD_SYNAPSE,
    preview,
    publishDns,
    sh,
    SLOTS,
    stackConfig,
    startSession,
    stopSession,
    timed,
    type MatrixClient,
    type Server,
    type SettingsOverrides,
} from "../e2e/session";

const SMALL = workerList(WORKER_PRESETS.small);
const HTTP_WORKERS = SMALL.filter((w) => w.port !== undefined);
const DOMAIN = "scale.test";
const HS = `matrix.${DOMAIN}`;

/** The running Synapse processes: unit → main PID (0 when stopped). */
function processes(): Record<string, string> {
    const units = ["matrix-synapse", "matrix-synapse-redis", ...SMALL.map((w) => `matrix-synapse-worker@${w.name}`)];
    const out = sh(units.map((u) => `echo "${u}=$(systemctl show -p MainPID --value ${u})"`).join("; ")).stdout;
    return Object.fromEntries(
        out
            .trim()
            .split("\n")
            .map((l) => l.split("=") as [string, string]),
    );
}

/** The requests a worker's journal says it served since `since` (Synapse's access log lines). */
function served(worker: string, since: string): string[] {
    return sh(
        `journalctl -u matrix-synapse-worker@${worker} --since ${JSON.stringify(since)} -o cat --no-pager | grep 'Processed request' || true`,
    )
        .stdout.trim()
        .split("\n")
        .filter(Boolean);
}

const ran = (run: Run) =>
    run.steps.filter((s) => !["same", "refresh"].includes(s.op) && s.type !== "pulumi:pulumi:Stack");

describe("scale-out: Synapse workers with Redis, deployed by the real Pulumi CLI", () => {
    let current: SettingsOverrides;
    const settings = () => stackConfig(current);
    let mx: MatrixClient;
    let roomId: string;
    const message = `hello through the workers ${Date.now()}`;
    let first: Run;
    let db: Server;

    beforeAll(async () => {
        const session = await startSession(path.join(CACHE, "run-scale"), SLOTS.scale, [
            // Each host comes with the Debian packages of its first deploy (workers: Redis; the
            // database elsewhere: PostgreSQL's client only). The e2e suite deploys onto a bare host.
            {
                name: "scale",
                domain: DOMAIN,
                packages: hostPackages({ firewall: true, redis: true, remoteDatabase: true }),
            },
            { name: "scale-db", domain: `db.${DOMAIN}`, packages: databaseHostPackages({ firewall: true }) },
        ]);
        db = session.servers[1]!;
        // One SSH key for both hosts (matrix:sshPrivateKey serves the database host too).
        const key = readFileSync(`${ctx.host.keyPath}.pub`, "utf8");
        assert.equal(db.sh("cat >> /root/.ssh/authorized_keys", key).code, 0);
        current = {
            synapse: { version: OLD_SYNAPSE, workers: "small" },
            users: [{ name: "alice", admin: true }],
            more: { database: { machine: { ipv4: db.host.guestIp, sshHostKey: db.host.hostKey } } },
        };
        const p = await timed("preview (cold, small)", () => preview(settings()));
        assert.equal(p.code, 0, explainFailure(p));
        await publishDns(p);
        first = await timed("up (cold, small)", () => deploy(settings()));
        assert.equal(first.code, 0, explainFailure(first));
    });

    afterAll(stopSession);

    it("started Redis, the main process and six workers, each its own unit under matrix-synapse.target", () => {
        const pids = processes();
        for (const [unit, pid] of Object.entries(pids)) assert.notEqual(pid, "0", `${unit} is not running`);
        assert.equal(sh("systemctl is-active matrix-synapse.target").stdout.trim(), "active");
        assert.equal(
            sh("runuser -u matrix-synapse -- redis-cli -s /run/matrix-synapse-redis/redis.sock ping").stdout.trim(),
            "PONG",
        );
        // Redis listens on no TCP port; the replication socket is Synapse's own.
        // (Debian's own redis-server instance, left as the package sets it up, is another process.)
        const redisPid = processes()["matrix-synapse-redis"]!;
        assert.equal(sh(`ss -Htlnp | grep -c 'pid=${redisPid},' || true`).stdout.trim(), "0");
        assert.match(sh(`ss -Hxlp | grep 'pid=${redisPid},'`).stdout, /\/run\/matrix-synapse-redis\/redis\.sock/);
        assert.match(sh("stat -c '%a %U' /run/matrix-synapse").stdout, /^750 matrix-synapse/);
        // Each worker process is sandboxed like the main one.
        const props = sh("systemctl show -p ProtectSystem,NoNewPrivileges,User matrix-synapse-worker@sync1").stdout;
        assert.match(props, /ProtectSystem=strict/);
        assert.match(props, /NoNewPrivileges=yes/);
        assert.match(props, /User=matrix-synapse/);
    });

    it("serves a real client through the workers: login, room, message, sync, upload; each worker's journal shows its share", async () => {
        const since = sh("date '+%Y-%m-%d %H:%M:%S'").stdout.trim();
        const outputs = await ctx.stack.outputs(true);
        const passwords = outputs.userPasswords as Record<string, string>;
        mx = await matrixClient("alice", passwords.alice!, HS);
        roomId = (await mx.createRoom({ name: "scale" })).room_id;
        await mx.sendTextMessage(roomId, message);
        assert.ok((await lastMessages(mx, roomId)).includes(message));
        const upload = await mx.uploadContent(Buffer.alloc(1024 * 1024, 7), {
            name: "scale.bin",
            type: "application/octet-stream",
        });
        const [server, mediaId] = upload.content_uri.replace("mxc://", "").split("/");
        const download = await get(`https://${HS}/_matrix/client/v1/media/download/${server}/${mediaId}`, {
            headers: { Authorization: `Bearer ${mx.getAccessToken()}` },
        });
        assert.equal(download.status, 200);
        assert.equal((await download.arrayBuffer()).byteLength, 1024 * 1024);
        // Two syncs, with the token in the header: both from one user, so one sync worker.
        for (let i = 0; i < 2; i++) {
            const r = await get(`https://${HS}/_matrix/client/v3/sync?timeout=0`, {
                headers: { Authorization: `Bearer ${mx.getAccessToken()}` },
            });
            assert.equal(r.status, 200);
        }
        const log = Object.fromEntries(HTTP_WORKERS.map((w) => [w.name, served(w.name, since)]));
        const syncs = ["sync1", "sync2"].map((w) => log[w]!.filter((l) => /\/sync/.test(l)).length);
        assert.ok(
            syncs.includes(0) && syncs.some((n) => n >= 2),
            `one sync worker got alice's syncs: ${syncs.join(", ")}`,
        );
        assert.ok(
            log.client1!.some((l) => /POST \/_matrix\/client\/v3\/createRoom/.test(l)),
            log.client1!.join("\n"),
        );
        assert.ok(log.client1!.some((l) => /PUT \/_matrix\/client\/v3\/rooms\/.*\/send\//.test(l)));
        assert.ok(
            log.media1!.some((l) => /POST \/_matrix\/media\/v3\/upload/.test(l)),
            log.media1!.join("\n"),
        );
        assert.ok(log.media1!.some((l) => /GET \/_matrix\/client\/v1\/media\/download/.test(l)));
    });

    it("runs federation sending and background tasks off the main process, each connected to Redis", () => {
        for (const w of ["federation_sender1", "background1"]) {
            const journal = sh(`journalctl -u matrix-synapse-worker@${w} -o cat --no-pager`).stdout;
            assert.match(journal, /Connected to redis/i, `${w}: ${journal.slice(-2000)}`);
        }
        const hs = sh("cat /etc/matrix-synapse/homeserver.yaml").stdout;
        assert.match(hs, /run_background_tasks_on: background1/);
        assert.match(hs, /federation_sender_instances:\n\s+- federation_sender1/);
    });

    describe("the database on its own host (matrix:database)", () => {
        const dbSql = (sql: string) => db.sh(`runuser -u postgres -- psql -qAt -c ${JSON.stringify(sql)}`);

        it("runs PostgreSQL there only, listening on its address, Synapse's connections all over TLS", () => {
            assert.notEqual(
                sh("dpkg-query -W -f='${Status}' postgresql 2>/dev/null || true").stdout,
                "install ok installed",
                "no PostgreSQL server on the Synapse host",
            );
            assert.match(
                db.sh("ss -Htln 'sport = :5432'").stdout,
                new RegExp(`${db.host.guestIp.replace(/\./g, "\\.")}:5432`),
            );
            const [tls, plain] = dbSql(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'synapse'",
            )
                .stdout.trim()
                .split("|")
                .map(Number);
            assert.ok(tls! > 0 && plain === 0, `TLS connections ${tls}, plain ${plain}`);
            // All of them from the Synapse host's own address.
            assert.equal(
                dbSql(
                    `SELECT count(*) FILTER (WHERE client_addr = '${ctx.host.guestIp}') || '|' || count(*) FILTER (WHERE client_addr IS DISTINCT FROM '${ctx.host.guestIp}') FROM pg_stat_activity WHERE usename = 'synapse'`,
                ).stdout.trim(),
                `${Number(tls) + Number(plain)}|0`,
            );
        });

        it("admits the Synapse host alone, with TLS, the server's certificate verified", () => {
            // The test machine is another address: the firewall drops it.
            const probe = spawnSync("timeout", ["3", "bash", "-c", `</dev/tcp/${db.host.guestIp}/5432`]);
            assert.notEqual(probe.status, 0, "5432 reachable from another address");
            const psql = (opts: string) =>
                sh(
                    `psql -w -X ${JSON.stringify(`host=${db.host.guestIp} dbname=synapse user=synapse ${opts}`)} -c 'SELECT 1' 2>&1 || true`,
                ).stdout;
            // From the Synapse host without TLS: no pg_hba entry admits it.
            assert.match(psql("sslmode=disable"), /no pg_hba\.conf entry .*no encryption/);
            // With TLS but checked against other CAs: the server's certificate is refused.
            assert.match(
                psql("sslmode=verify-full sslrootcert=/etc/ssl/certs/ca-certificates.crt"),
                /certificate verify failed/,
            );
            const secrets = sh("cat /etc/matrix-synapse/secrets.yaml").stdout;
            assert.match(secrets, /sslmode: verify-full/);
            assert.equal(
                sh("openssl x509 -noout -subject -in /etc/matrix-synapse/database-ca.pem").stdout.trim(),
                "subject=CN = matrix-pulumi PostgreSQL CA",
            );
        });

        it("backs up through pg_dump against that host, and restores into it", async () => {
            const backup = sh(
                "systemctl start matrix-synapse-backup.service && ls -d /var/backups/matrix-synapse/2*Z | tail -n 1",
            );
            assert.equal(backup.code, 0, backup.stderr);
            const folder = backup.stdout.trim();
            assert.match(
                sh(`pg_restore --list ${folder}/database.dump | grep -c 'TABLE DATA'`).stdout.trim(),
                /^[1-9][0-9]+$/,
            );
            const later = `sent after the backup ${Date.now()}`;
            await mx.sendTextMessage(roomId, later);
            const restore = await timed("checks: restore (remote database)", () =>
                sh(`matrix-synapse-restore ${folder}`),
            );
            assert.equal(restore.code, 0, restore.stderr);
            const messages = await lastMessages(mx, roomId);
            assert.ok(messages.includes(message), "the message from before the backup is back");
            assert.ok(!messages.includes(later), "the database is the backup's: the later message is gone");
            // Every process is back: the restore started the workers again with their target.
            for (const [unit, pid] of Object.entries(processes())) assert.notEqual(pid, "0", `${unit} after restore`);
            assert.equal(
                dbSql("SELECT datcollate || '|' || datctype FROM pg_database WHERE datname = 'synapse'").stdout.trim(),
                "C|C",
            );
        });
    });

    describe("upgrade with workers (every process on one version)", () => {
        let up: Run;
        let before: Record<string, string>;
        let since: string;
        beforeAll(async () => {
            before = processes();
            since = sh("date +%s").stdout.trim();
            current = { ...current, synapse: { version: NEW_SYNAPSE, workers: "small" } };
            up = await timed("up (upgrade with workers)", () => deploy(settings()));
            assert.equal(up.code, 0, explainFailure(up));
        });
        it("stopped the workers, upgraded and migrated through the main process, then started them", () => {
            const started = (unit: string) =>
                Number(sh(`date -d "$(systemctl show -p ActiveEnterTimestamp --value ${unit})" +%s.%N`).stdout.trim());
            const main = started("matrix-synapse");
            const now = processes();
            for (const w of SMALL) {
                const unit = `matrix-synapse-worker@${w.name}`;
                // The worker went down before the main process came up on the new version ...
                const stops = sh(
                    `journalctl -u ${unit} --since @${since} -o short-unix --no-pager | grep -E 'Stopped|Deactivated' | cut -d' ' -f1`,
                )
                    .stdout.trim()
                    .split("\n")
                    .filter(Boolean)
                    .map(Number);
                assert.ok(
                    stops.some((t) => t < main),
                    `${unit} stopped before the main process started: ${stops.join(", ")} / ${main}`,
                );
                // ... and came up after it.
                assert.ok(started(unit) > main, `${unit} started after the main process`);
                assert.notEqual(now[unit], before[unit]);
            }
            assert.match(up.output, /backup before upgrading/);
            assert.match(
                sh("ls /var/backups/matrix-synapse/").stdout,
                new RegExp(`pre-upgrade-${OLD_SYNAPSE}-to-${NEW_SYNAPSE}`),
            );
        });
        it("runs the new version: the main process and a worker answer with it", async () => {
            const fed = (await (await get(`https://${HS}/_matrix/federation/v1/version`)).json()) as {
                server: { version: string };
            };
            assert.equal(fed.server.version, NEW_SYNAPSE);
            const client1 = HTTP_WORKERS.find((w) => w.name === "client1")!;
            const worker = sh(`curl -fsS http://127.0.0.1:${client1.port}/_matrix/federation/v1/version`).stdout;
            assert.equal((JSON.parse(worker) as { server: { version: string } }).server.version, NEW_SYNAPSE);
            const main = sh("curl -fsS http://127.0.0.1:8008/_matrix/federation/v1/version").stdout;
            assert.equal((JSON.parse(main) as { server: { version: string } }).server.version, NEW_SYNAPSE);
        });
    });

    describe("a worker's file edited by hand", () => {
        let drift: Run;
        let restored: Run;
        let before: Record<string, string>;
        beforeAll(async () => {
            assert.equal(sh("echo '# hand edit' >> /etc/matrix-synapse/workers/sync2.yaml").code, 0);
            before = processes();
            drift = await timed("preview (worker drift)", () => preview(settings()));
            restored = await timed("up (worker drift)", () => deploy(settings()));
            assert.equal(restored.code, 0, explainFailure(restored));
        });
        it("is what the preview lists, and the up restores it restarting only that worker", () => {
            assert.deepEqual(drift.changed, ["synapse-workers-service", "synapse-workers-sync2"]);
            assert.deepEqual(restored.changed, drift.changed);
            const now = processes();
            for (const [unit, pid] of Object.entries(now)) {
                if (unit === "matrix-synapse-worker@sync2") assert.notEqual(pid, before[unit]);
                else assert.equal(pid, before[unit], `${unit} kept running`);
            }
        });
    });

    describe("back to one process (workers: none)", () => {
        let p: Run;
        let up: Run;
        beforeAll(async () => {
            current = { ...current, synapse: { version: NEW_SYNAPSE, workers: "none" } };
            p = await timed("preview (small → none)", () => preview(settings()));
            assert.equal(p.code, 0, explainFailure(p));
            up = await timed("up (small → none)", () => deploy(settings()));
            assert.equal(up.code, 0, explainFailure(up));
        });
        it("changed what the preview listed: the Synapse files, the workers, Redis and nginx's routes, never PostgreSQL", () => {
            assert.deepEqual(up.changed, p.changed);
            assert.ok(!up.changed.some((n) => n.startsWith("postgres")), up.changed.join(", "));
            const deleted = ran(up)
                .filter((s) => s.op === "delete")
                .map((s) => s.name);
            assert.ok(deleted.includes("synapse-workers-service") && deleted.includes("synapse-redis-service"));
        });
        it("leaves no worker and no Redis running, and the one process serves the room", async () => {
            assert.equal(
                sh(
                    "systemctl list-units --plain --no-legend --state=active 'matrix-synapse-worker@*' 'matrix-synapse-redis*' | wc -l",
                ).stdout.trim(),
                "0",
            );
            assert.equal(sh("pgrep -u matrix-synapse -c -f synapse.app || true").stdout.trim(), "1");
            assert.equal(sh("ls /etc/matrix-synapse/workers 2>/dev/null | wc -l").stdout.trim(), "0");
            assert.ok((await lastMessages(mx, roomId)).includes(message));
            const again = await timed("preview (after none)", () => ctx.stack.preview({ expectNoChanges: true }));
            assert.equal(again.code, 0, explainFailure(again));
        });
    });

    describe("destroy, keeping the data on the database host", () => {
        let destroyed: Run;
        beforeAll(async () => {
            destroyed = await timed("destroy (keep data)", () => ctx.stack.destroy());
            assert.equal(destroyed.code, 0, explainFailure(destroyed));
        });
        it("kept the database, its tables and the room's events there; PostgreSQL back on loopback only", () => {
            const dbSql = (sql: string) =>
                db.sh(`runuser -u postgres -- psql -qAt -d synapse -c ${JSON.stringify(sql)}`);
            assert.ok(Number(dbSql("SELECT count(*) FROM events").stdout.trim()) > 0);
            assert.equal(dbSql(`SELECT count(*) FROM rooms WHERE room_id = '${roomId}'`).stdout.trim(), "1");
            assert.doesNotMatch(
                db.sh("ss -Htln 'sport = :5432'").stdout,
                new RegExp(db.host.guestIp.replace(/\./g, "\\.")),
            );
            assert.equal(
                db.sh("nft list table inet matrix_pulumi >/dev/null 2>&1 && echo loaded || echo gone").stdout.trim(),
                "gone",
            );
        });
    });
});
