// End to end: the real Pulumi CLI deploys the program to a real Debian 12 host (systemd-nspawn),
// with real PostgreSQL, Synapse, nginx, certbot against pebble (HTTP-01 validated for real), and
// a real Matrix client. The stack leaves matrix:dns out and the test puts the records the stack
// lists (dnsRecordsToCreate) into the test DNS, as a user with another DNS provider would.
// Needs root and the toolchain from `npm run tools:pulumi`. Run with `npm run test:e2e`.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { spawnSync } from "node:child_process";
import { fetch } from "undici";
import { registerUser, withTunnel } from "../../lib/registerUser";
import { sshExec } from "../../lib/ssh";
import { shq } from "../../render/shell";
import { registerFromStack } from "../../scripts/register-user";
import { acmePorts, startAcme, type Acme } from "../../lab/acme";
import { hostChecks, httpChecks, listeners } from "./checks";
import type { Run } from "../../lab/pulumi";
import {
    CACHE,
    COMMAND,
    componentTimes,
    ctx,
    deploy,
    DOMAIN,
    EL,
    explainFailure,
    get,
    HS,
    lastMessages,
    MANAGED_FILE,
    matrixClient,
    NEW_SYNAPSE,
    OLD_SYNAPSE,
    preview,
    publishDns,
    rawConfig,
    RELEASES,
    seesMessage,
    selfCheck,
    type SelfCheckReport,
    servedSynapseVersion,
    services,
    sh,
    stackConfig,
    startSession,
    SLOTS,
    stopSession,
    target,
    timed,
    timings,
    type SettingsOverrides,
} from "./session";

/** What ran, for the log: "name (op)" for every step that changed something. */
const ran = (run: Run) =>
    run.steps
        .filter((s) => !["same", "refresh"].includes(s.op) && s.type !== "pulumi:pulumi:Stack")
        .map((s) => `${s.name} (${s.op})`);

/** A config change as a user makes it: `pulumi preview`, then `pulumi up`; both runs kept. */
async function change(label: string, settings: ReturnType<typeof stackConfig>): Promise<{ preview: Run; up: Run }> {
    const p = await timed(`preview (${label})`, () => preview(settings));
    assert.equal(p.code, 0, explainFailure(p));
    const u = await timed(`up (${label})`, () => deploy(settings));
    assert.equal(u.code, 0, explainFailure(u));
    console.log(`${label}: preview lists ${p.changed.join(", ") || "nothing"}; up changed ${ran(u).join(", ")}`);
    return { preview: p, up: u };
}

/** A support document and monitoring as the config-change phase sets them. */
const SUPPORT = { contacts: [{ matrixId: `@alice:${DOMAIN}`, role: "admin" }], page: `https://${DOMAIN}/support` };
const MONITORING = { enabled: true, scrapeInterval: "5s" };
const MONITORING_FILES = [
    "alertmanager-dropin",
    "alertmanager-yml",
    "metrics-command",
    "metrics-service",
    "metrics-timer",
    "node-dropin",
    "postgres-dropin",
    "prometheus-dropin",
    "prometheus-yml",
    "rules-yml",
];

/** A second pebble whose certificates live 5 seconds (the expired-certificate fault). */
let shortLived: Acme | undefined;

/** Run `fn` while nginx serves an expired certificate for `name`; the deployed one is put back. */
async function withExpiredCertificate<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const dir = path.join(ctx.run, "acme-short");
    mkdirSync(dir, { recursive: true });
    for (const f of ["ca.pem", "ca.key", "cert.pem", "key.pem"])
        copyFileSync(path.join(ctx.run, "acme", f), path.join(dir, f));
    const ports = acmePorts(SLOTS.e2e);
    shortLived = await startAcme(
        dir,
        ctx.server.net.hostIp,
        { ...ports, directory: ports.directory + 5, management: ports.management + 5 },
        {
            keep: true,
            validitySeconds: 5,
            dnsServer: ctx.acme.dnsServer,
        },
    );
    const live = `/etc/letsencrypt/live/${name}`;
    const lineage = "self-check-expired";
    try {
        const issue = sh(
            [
                "set -e",
                "export REQUESTS_CA_BUNDLE=/etc/matrix-pulumi/acme-ca.pem",
                `certbot certonly -n -q --webroot -w /var/www/acme --cert-name ${lineage} -d ${name} --server ${shortLived.directoryUrl} --agree-tos --register-unsafely-without-email`,
                `cp -a ${live} /root/live.orig`,
                `cp --remove-destination -L /etc/letsencrypt/live/${lineage}/fullchain.pem ${live}/fullchain.pem`,
                `cp --remove-destination -L /etc/letsencrypt/live/${lineage}/privkey.pem ${live}/privkey.pem`,
                "systemctl reload nginx",
            ].join("\n"),
        );
        assert.equal(issue.code, 0, issue.stderr);
        const notAfter = sh(`date -d "$(openssl x509 -enddate -noout -in ${live}/fullchain.pem | cut -d= -f2)" +%s`);
        const wait = Number(notAfter.stdout.trim()) * 1000 - Date.now() + 2000;
        await new Promise((r) => setTimeout(r, Math.max(wait, 0)));
        return await fn();
    } finally {
        sh(
            [
                `if [ -d /root/live.orig ]; then rm -rf ${live} && mv /root/live.orig ${live}; fi`,
                `certbot delete -n -q --cert-name ${lineage} || true`,
                `rm -rf /etc/letsencrypt/accounts/${new URL(shortLived.directoryUrl).host}`,
                "systemctl reload nginx",
            ].join("; "),
        );
        shortLived.stop();
    }
}

describe("e2e: a homeserver on a real host, deployed by the real Pulumi CLI", () => {
    let firstPreview: Run;
    let records: string[];
    let first: Run;
    let secret: string;
    const alicePassword = randomBytes(12).toString("hex");
    let roomId: string;
    const message = `hello from e2e ${Date.now()}`;
    /** The stack's settings as the phases below leave them. */
    let current: SettingsOverrides = {};
    const settings = () => stackConfig(current);

    beforeAll(async () => {
        // Debian 13, the stable release a new server comes with (the other suites keep Debian 12).
        await startSession(path.join(CACHE, "run"), SLOTS.e2e, [{ name: "e2e", domain: DOMAIN, release: "trixie" }]);
        // A host whose PostgreSQL is not on 5432: something else holds 5432 when Debian's package
        // creates the cluster, which then gets 5433 (as the images did, built beside this
        // machine's PostgreSQL). Once deployed, 5432 is let go: the only cluster is on 5433.
        sh(
            [
                "printf '[Socket]\\nListenStream=0.0.0.0:5432\\n' > /run/systemd/system/plant-5432.socket",
                "printf '[Service]\\nExecStart=/bin/true\\n' > /run/systemd/system/plant-5432.service",
                "systemctl daemon-reload && systemctl start plant-5432.socket",
            ].join(" && "),
        );
        // A new user's first steps: preview, create the DNS records it lists, then up.
        firstPreview = await timed("preview (cold)", () => preview(settings()));
        assert.equal(firstPreview.code, 0, explainFailure(firstPreview));
        records = await publishDns(firstPreview);
        first = await timed("up (cold)", () => deploy(settings()));
        for (const [c, s] of componentTimes(first)) timings.push([`  up (cold): ${c}`, s]);
        assert.equal(first.code, 0, explainFailure(first));
        sh("systemctl stop plant-5432.socket && rm -f /run/systemd/system/plant-5432.* && systemctl daemon-reload");
        secret = String((await ctx.stack.outputs(true)).registrationSharedSecret);
    });

    afterAll(stopSession);

    it("previewed the records to create, the apex's included, and created exactly what it previewed", () => {
        assert.deepEqual([...records].sort(), [DOMAIN, EL, HS].map((n) => `${n} A ${ctx.host.guestIp}`).sort());
        assert.equal(first.steps.filter((s) => s.failed).length, 0);
        assert.deepEqual(first.changed, firstPreview.changed);
        assert.ok(first.steps.filter((s) => s.type !== "pulumi:pulumi:Stack").every((s) => s.op === "create"));
    });

    it("ran every step once, in the program's order, the independent ones side by side", () => {
        assert.equal(first.steps.filter((s) => s.type === COMMAND).length, 19);
        assert.equal(first.steps.filter((s) => s.type === MANAGED_FILE).length, 10);
        const step = (n: string) => first.steps.find((s) => s.name === n)!;
        const after = (later: string, earlier: string) =>
            assert.ok(step(later).startSeq > step(earlier).endSeq, `${later} starts after ${earlier} ends`);
        after("synapse-service", "postgres-database");
        after("synapse-service", "synapse-secrets-yaml");
        after("nginx-sites", "nginx-homeserver-vhost");
        after("nginx-sites", "synapse-service");
        after("element-site", "nginx-sites");
        after("element-site", "element-config-json");
        // Element's download and the installs overlap: none waits for another.
        for (const [a, b] of [
            ["element-release", "synapse-install"],
            ["postgres-install", "nginx-install"],
            ["synapse-install", "nginx-install"],
        ]) {
            assert.ok(step(a!).startSeq < step(b!).endSeq && step(b!).startSeq < step(a!).endSeq, `${a} ∥ ${b}`);
        }
    });

    it("runs on Debian 13's only cluster, 17/main on 5433: Synapse and the backups' command use that port (the exporter's pg_up: below)", () => {
        assert.equal(
            sh("pg_lsclusters -h").stdout.trim().replace(/\s+/g, " ").split(" ").slice(0, 4).join(" "),
            "17 main 5433 online",
        );
        assert.match(sh("cat /etc/matrix-synapse/secrets.yaml").stdout, /port: 5433\n/);
        assert.equal(sh("ss -Htln 'sport = :5432'").stdout.trim(), "");
        assert.ok(sh("/usr/local/sbin/matrix-synapse-db dump | wc -c").stdout.trim() !== "0");
    });

    it("previews no change right after (pulumi preview --expect-no-changes)", async () => {
        const again = await timed("preview (no change)", () => ctx.stack.preview({ expectNoChanges: true }));
        assert.equal(again.code, 0, explainFailure(again));
        assert.deepEqual(again.changed, []);
    });

    httpChecks();
    hostChecks(5433);

    it("renews certificates (dry run) and has the reload hook", () => {
        // A dry run without --server would switch to Let's Encrypt staging (docs/operations.md).
        const r = sh(
            `REQUESTS_CA_BUNDLE=/etc/matrix-pulumi/acme-ca.pem certbot renew --dry-run --no-random-sleep-on-renew -q --server ${ctx.acme.directoryUrl} && test -x /etc/letsencrypt/renewal-hooks/deploy/matrix-pulumi-reload-nginx && echo ok`,
        );
        assert.equal(r.stdout.trim(), "ok", r.stderr);
    });

    it("registers an admin with the shared secret, and a real client talks Matrix", async () => {
        const userId = await timed("checks: register", () =>
            registerUser(target(), secret, { name: "alice", password: alicePassword, admin: true }),
        );
        assert.equal(userId, `@alice:${DOMAIN}`);
        const mx = await matrixClient("alice", alicePassword);
        roomId = (await mx.createRoom({ name: "e2e" })).room_id;
        await mx.sendTextMessage(roomId, message);
        assert.ok((await lastMessages(mx, roomId)).includes(message));
        const upload = await timed("checks: 20 MB upload", () =>
            mx.uploadContent(Buffer.alloc(20 * 1024 * 1024, 7), { name: "e2e.bin", type: "application/octet-stream" }),
        );
        assert.match(upload.content_uri, new RegExp(`^mxc://${DOMAIN.replace(/\./g, "\\.")}/`));
    });

    describe("npm run self-check, as the operator runs it after the deploy", () => {
        let clean: SelfCheckReport;
        let cors: SelfCheckReport;
        let expired: SelfCheckReport;
        const apex = "/etc/nginx/sites-available/matrix-apex.conf";
        beforeAll(async () => {
            clean = await timed("self-check", () => selfCheck(settings()));
            // Fault 1: the CORS header gone from the well-known documents (a hand edit).
            sh(
                `cp -a ${apex} /root/apex.conf.orig && sed -i '/Access-Control-Allow-Origin/d' ${apex} && systemctl reload nginx`,
            );
            try {
                cors = await selfCheck(settings());
            } finally {
                sh(`mv -f /root/apex.conf.orig ${apex} && systemctl reload nginx`);
            }
            // Fault 2: an expired certificate served for the homeserver: a second pebble issues
            // one valid for 5 seconds, nginx serves it, the self-check runs once it has expired.
            expired = await timed("self-check with an expired certificate", () =>
                withExpiredCertificate(HS, () => selfCheck(settings(), shortLived!.issuingRoot)),
            );
        });

        it("passes every check on the new deploy (warnings allowed: no backup yet)", () => {
            assert.equal(
                clean.exitCode,
                0,
                JSON.stringify(
                    clean.results.filter((r) => r.status !== "pass"),
                    null,
                    1,
                ),
            );
            const ids = clean.results.map((r) => r.id).join(" ");
            for (const part of ["dns", "tls", "well-known", "federation", "client", "element", "unit"]) {
                assert.match(ids, new RegExp(part), `a ${part} check ran: ${ids}`);
            }
        });

        it("catches the missing CORS header on the well-known documents, and says how to fix it", () => {
            assert.equal(cors.exitCode, 1);
            const failed = cors.results.filter((r) => r.status === "fail");
            assert.ok(failed.length > 0 && failed.every((r) => /well-known/.test(r.id)), JSON.stringify(failed));
            assert.ok(
                failed.some((r) => /Access-Control-Allow-Origin/.test(r.detail + (r.fix ?? ""))),
                JSON.stringify(failed),
            );
        });

        it("catches the expired certificate on the homeserver's name", () => {
            assert.equal(expired.exitCode, 1);
            const tls = expired.results.find(
                (r) => r.id.startsWith("tls") && r.id.includes(HS) && !/1\.[01]|legacy/i.test(r.id),
            );
            assert.equal(tls?.status, "fail", JSON.stringify(tls));
            assert.match(String(tls?.detail), /expired/i);
        });

        it("served the deployed certificate again afterwards", async () => {
            // nginx's reload hands new connections to new workers within moments, not at once.
            let serials = ctx.server.certificateSerials(HS);
            for (let i = 0; i < 50 && serials.served !== serials.stored; i++) {
                await new Promise((r) => setTimeout(r, 100));
                serials = ctx.server.certificateSerials(HS);
            }
            assert.equal(serials.served, serials.stored);
        });
    });

    describe("every create script run again on the same host (scripts are idempotent)", () => {
        const results: { name: string; code: number; stderr: string }[] = [];
        let after: Run;
        let pids: [ReturnType<typeof services>, ReturnType<typeof services>];
        beforeAll(async () => {
            const before = services();
            // The scripts exactly as the state holds them, in its (dependency) order, stdin included.
            const state = await ctx.stack.resources();
            await timed("re-run every create script", async () => {
                for (const r of state.filter((x) => x.type === COMMAND)) {
                    const i = r.inputs as {
                        create: string;
                        stdin?: string;
                        connection: Parameters<typeof sshExec>[0];
                    };
                    const res = await sshExec(i.connection, i.create, i.stdin ?? "");
                    results.push({ name: r.name, code: res.code, stderr: res.stderr });
                }
            });
            pids = [before, services()];
            after = await timed("preview (after the re-runs)", () => ctx.stack.preview({ expectNoChanges: true }));
        });
        it("ran all 19 scripts again, each exiting 0", () => {
            assert.equal(results.length, 19);
            assert.deepEqual(
                results.filter((r) => r.code !== 0).map((r) => `${r.name}: ${r.stderr.slice(-300)}`),
                [],
            );
        });
        it("restarted nothing: Synapse, nginx and PostgreSQL keep their processes", () => {
            const [before, now] = pids;
            assert.deepEqual([now.synapse, now.nginx, now.postgres], [before.synapse, before.nginx, before.postgres]);
        });
        it("left nothing for Pulumi to change (preview --expect-no-changes)", () => {
            assert.equal(after.code, 0, explainFailure(after));
            assert.deepEqual(after.changed, []);
        });
        httpChecks();
        hostChecks(5433);
        it("kept the user and the message", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("config changes, key by key: pulumi preview lists exactly what pulumi up then changes", () => {
        const results: Record<string, { preview: Run; up: Run }> = {};
        let pidsBefore: ReturnType<typeof services>;
        let pidsAfterRegistration: ReturnType<typeof services>;
        // Each key's change applied on top of the ones before it.
        const keys: [string, () => SettingsOverrides, string[]][] = [
            [
                "synapse.enableRegistration",
                () => ({ synapse: { enableRegistration: true } }),
                ["element-config-json", "synapse-homeserver-yaml", "synapse-service"],
            ],
            [
                "synapse.maxUploadSize",
                () => ({ synapse: { enableRegistration: true, maxUploadSize: "100M" } }),
                ["nginx-homeserver-vhost", "nginx-sites", "synapse-homeserver-yaml", "synapse-service"],
            ],
            [
                "element.version",
                () => ({ element: { ...ctx.artifacts.elements[RELEASES.next.key] } }),
                ["element-config-json", "element-release", "element-site"],
            ],
            [
                "element.sha256 (a new tarball of the same version)",
                () => ({ element: { ...ctx.artifacts.elements[RELEASES.rebuilt.key] } }),
                ["element-config-json", "element-release", "element-site"],
            ],
            ["acme.email", () => ({ acme: { email: "ops@matrix-e2e.test" } }), ["nginx-acme-account"]],
            [
                `synapse.version ${OLD_SYNAPSE} → ${NEW_SYNAPSE}`,
                () => ({ synapse: { enableRegistration: true, maxUploadSize: "100M", version: NEW_SYNAPSE } }),
                ["synapse-install", "synapse-service"],
            ],
            // Two keys in one up (the run is shorter): each one's resources, and nothing else.
            [
                "synapse.mediaRetention and support",
                () => ({
                    synapse: {
                        enableRegistration: true,
                        maxUploadSize: "100M",
                        version: NEW_SYNAPSE,
                        mediaRetention: { local: "1y", remote: "30d" },
                    },
                    more: { support: SUPPORT },
                }),
                ["nginx-apex-vhost", "nginx-sites", "synapse-homeserver-yaml", "synapse-service"],
            ],
            [
                "monitoring.enabled",
                () => ({ more: { support: SUPPORT, monitoring: MONITORING } }),
                [
                    "monitoring",
                    ...MONITORING_FILES.map((f) => `monitoring-${f}`),
                    "monitoring-dirs",
                    "monitoring-service",
                    "packages-install",
                    "synapse-homeserver-yaml",
                    "synapse-service",
                ].sort(),
            ],
        ];
        beforeAll(async () => {
            pidsBefore = services();
            for (const [key, overrides] of keys) {
                current = { ...current, ...overrides() };
                results[key] = await change(key, settings());
                if (key === "synapse.enableRegistration") pidsAfterRegistration = services();
            }
        });
        for (const [key, , expected] of keys) {
            it(`${key}: previewed and changed exactly ${expected.join(", ")}`, () => {
                const r = results[key]!;
                assert.deepEqual(r.preview.changed, r.up.changed, "what the preview listed is what up changed");
                assert.deepEqual(r.up.changed, expected);
            });
        }
        it("left nginx and PostgreSQL running as they were when Synapse's config changed", () => {
            assert.notEqual(pidsAfterRegistration.synapse, pidsBefore.synapse);
            assert.equal(pidsAfterRegistration.nginx, pidsBefore.nginx);
            assert.equal(pidsAfterRegistration.postgres, pidsBefore.postgres);
        });
        it("opened registration", async () => {
            const url = `https://${HS}/_matrix/client/v3/register`;
            const body = { username: "bob", password: randomBytes(12).toString("hex") };
            const first401 = await get(url, { method: "POST", body: JSON.stringify(body) });
            assert.equal(first401.status, 401);
            const { session } = (await first401.json()) as { session: string };
            const done = await get(url, {
                method: "POST",
                body: JSON.stringify({ ...body, auth: { type: "m.login.dummy", session } }),
            });
            assert.equal(done.status, 200, await done.clone().text());
            assert.equal(((await done.json()) as { user_id: string }).user_id, `@bob:${DOMAIN}`);
        });
        it("serves the rebuilt Element release with its own config.json pointing at the homeserver", async () => {
            const index = await (await get(`https://${EL}/`)).text();
            assert.match(index, /element 1\.12\.31 rebuilt/);
            const config = (await (await get(`https://${EL}/config.json`)).json()) as {
                default_server_config: { "m.homeserver": { base_url: string } };
            };
            assert.equal(config.default_server_config["m.homeserver"].base_url, `https://${HS}`);
            // The release before it keeps its folder and its config.json (a rollback is a switch);
            // the one before that is gone.
            const dirs = sh("ls /var/www/element/releases").stdout.trim().split("\n");
            assert.equal(dirs.filter((d) => d.startsWith("v1.12.31-")).length, 2, dirs.join(" "));
            assert.equal(dirs.length, 2, dirs.join(" "));
            assert.equal(
                sh("readlink /var/www/element/previous").stdout.trim(),
                `/var/www/element/releases/v1.12.31-${ctx.artifacts.elements[RELEASES.next.key]!.sha256.slice(0, 12)}`,
            );
        });
        it("keeps media as configured: local media a year, remote media 30 days", () => {
            const yaml = sh("cat /etc/matrix-synapse/homeserver.yaml").stdout;
            assert.match(yaml, /media_retention:\n\s+local_media_lifetime: 1y\n\s+remote_media_lifetime: 30d/);
        });
        it("serves the support document on the server name", async () => {
            const res = await get(`https://${DOMAIN}/.well-known/matrix/support`);
            assert.equal(res.headers.get("access-control-allow-origin"), "*");
            assert.deepEqual(await res.json(), {
                contacts: [{ matrix_id: `@alice:${DOMAIN}`, role: "m.role.admin" }],
                support_page: `https://${DOMAIN}/support`,
            });
        });
        it("upgraded Synapse, backing up the database first", async () => {
            assert.equal(await servedSynapseVersion(), NEW_SYNAPSE);
            const install = sh("ls /var/backups/matrix-synapse").stdout;
            const backup = new RegExp(
                `pre-upgrade-${OLD_SYNAPSE.replace(/\./g, "\\.")}-to-${NEW_SYNAPSE}-\\S+\\.dump`,
            ).exec(install)?.[0];
            assert.ok(backup, install);
            const listing = sh(`pg_restore --list /var/backups/matrix-synapse/${backup} | grep -c 'TABLE DATA'`);
            assert.ok(Number(listing.stdout.trim()) > 50, `a real dump: ${listing.stdout}${listing.stderr}`);
            assert.equal(sh(`stat -c '%a' /var/backups/matrix-synapse`).stdout.trim(), "700");
        });
        it("kept the users and the message", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("metrics and alerts (matrix:monitoring)", () => {
        const query = (q: string) =>
            (
                JSON.parse(
                    sh(`curl -fsS --get --data-urlencode ${shq(`query=${q}`)} http://127.0.0.1:9090/api/v1/query`)
                        .stdout,
                ) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }
            ).data.result;
        const activeAlerts = () =>
            (
                JSON.parse(sh("curl -fsS http://127.0.0.1:9093/api/v2/alerts").stdout) as {
                    labels: Record<string, string>;
                    status: { state: string };
                }[]
            ).filter((a) => a.status.state === "active");
        const until = async (what: string, seconds: number, ok: () => boolean) => {
            const start = Date.now();
            while (!ok()) {
                if (Date.now() - start > seconds * 1000) throw new Error(`not within ${seconds} s: ${what}`);
                await new Promise((r) => setTimeout(r, 2000));
            }
            return (Date.now() - start) / 1000;
        };
        let fired = 0;
        let resolved = 0;
        let downCheck: SelfCheckReport;

        /** What Prometheus scrapes now, by job, and whether each answered its last scrape. */
        const targets = () =>
            (
                JSON.parse(sh("curl -fsS http://127.0.0.1:9090/api/v1/targets").stdout) as {
                    data: { activeTargets: { labels: { job: string }; health: string }[] };
                }
            ).data.activeTargets.map((t) => `${t.labels.job} ${t.health}`);
        const JOBS = ["alertmanager", "node", "postgres", "prometheus", "synapse"];
        let monitored: SelfCheckReport;
        beforeAll(async () => {
            // Not `up`: Debian's own Prometheus ran with its defaults between the package install
            // and our drop-in, and its `up` series linger for five minutes. Every job listed, not
            // only every listed target up: right after a (re)start Prometheus lists no target at
            // all until its first discovery, and an empty list is "every target up".
            await until("every job's target up", 90, () => {
                const now = targets();
                return JOBS.every((job) => now.includes(`${job} up`));
            });
            monitored = await timed("self-check (monitoring on)", () => selfCheck(settings()));
        });

        it("self-check passes, monitoring's units among those it checks", () => {
            assert.equal(monitored.exitCode, 0, JSON.stringify(monitored.results.filter((r) => r.status === "fail")));
            const units = monitored.results.filter((r) => r.id.startsWith("unit ")).map((r) => r.id);
            for (const u of [
                "prometheus",
                "prometheus-alertmanager",
                "prometheus-node-exporter",
                "prometheus-postgres-exporter",
            ]) {
                assert.ok(units.includes(`unit ${u}`), units.join(", "));
            }
        });

        it("listens on loopback only: Prometheus, Alertmanager (no gossip port), both exporters, Synapse's metrics", () => {
            const local = listeners();
            for (const port of [9000, 9090, 9093, 9100, 9187])
                assert.deepEqual(local(port), [`127.0.0.1:${port}`], String(port));
            assert.deepEqual(local(9094), []);
        });

        it("scrapes Synapse, the node, PostgreSQL and the certificate and backup metrics", () => {
            assert.deepEqual(
                targets().sort(),
                JOBS.map((job) => `${job} up`),
            );
            assert.deepEqual(
                query("synapse_build_info").map((r) => r.metric.version),
                [NEW_SYNAPSE],
            );
            assert.ok(Number(query('node_filesystem_avail_bytes{mountpoint="/"}')[0]?.value[1]) > 0);
            assert.equal(query("pg_up")[0]?.value[1], "1");
            const notAfter = sh(
                `date -d "$(openssl x509 -enddate -noout -in /etc/letsencrypt/live/${HS}/cert.pem | cut -d= -f2)" +%s`,
            );
            assert.equal(
                query(`matrix_certificate_expiry_timestamp_seconds{name="${HS}"}`)[0]?.value[1],
                notAfter.stdout.trim(),
            );
            // The default schedule, "daily", as systemd computes its period.
            assert.equal(query("matrix_backup_interval_seconds")[0]?.value[1], "86400");
        });

        it("fires SynapseDown through Alertmanager when Synapse stops, and resolves it after the restart", async () => {
            sh("systemctl stop matrix-synapse");
            try {
                downCheck = await selfCheck(settings());
                fired = await timed("SynapseDown firing", () =>
                    until("SynapseDown active in Alertmanager", 180, () =>
                        activeAlerts().some((a) => a.labels.alertname === "SynapseDown" && a.labels.process === "main"),
                    ),
                );
            } finally {
                sh("systemctl start matrix-synapse");
            }
            resolved = await timed("SynapseDown resolved", () =>
                until(
                    "SynapseDown no longer active",
                    180,
                    () => !activeAlerts().some((a) => a.labels.alertname === "SynapseDown"),
                ),
            );
            console.log(
                `SynapseDown: firing ${fired.toFixed(0)} s after the stop, resolved ${resolved.toFixed(0)} s after the start`,
            );
            assert.deepEqual(
                activeAlerts().map((a) => a.labels.alertname),
                [],
            );
        });

        it("self-check, with Synapse stopped, failed on its unit and on the client API", () => {
            const failed = downCheck.results.filter((r) => r.status === "fail").map((r) => r.id);
            assert.ok(
                failed.some((id) => /matrix-synapse/.test(id)),
                failed.join(", "),
            );
            assert.ok(
                failed.some((id) => /client/.test(id)),
                failed.join(", "),
            );
        });
    });

    describe("drift: files edited by hand on the host", () => {
        const edited = [
            "element-config-json",
            "nginx-homeserver-vhost",
            "synapse-homeserver-yaml",
            "synapse-secrets-yaml",
        ];
        const digests = () =>
            sh(
                "sha256sum /etc/matrix-synapse/*.yaml /etc/nginx/sites-available/matrix-*.conf /var/www/element/current/config.json /etc/systemd/system/matrix-synapse.service",
            ).stdout;
        let clean: string;
        let editedDigests: string;
        let pidsEdited: ReturnType<typeof services>;
        let drift: Run;
        let afterPreview: { digests: string; secretsMode: string };
        let withoutRefresh: Run;
        let restored: Run;
        beforeAll(async () => {
            clean = digests();
            const edit = sh(
                [
                    "sed -i 's/^enable_registration: true$/enable_registration: false/' /etc/matrix-synapse/homeserver.yaml",
                    "chmod 0644 /etc/matrix-synapse/secrets.yaml",
                    "echo '# hand edit' >> /etc/nginx/sites-available/matrix-homeserver.conf",
                    `sed -i 's/"brand": "Element"/"brand": "Hand edited"/' /var/www/element/current/config.json`,
                    // The edit takes effect, as a hand edit would: Synapse restarted, registration closed.
                    "systemctl restart matrix-synapse",
                    "until curl -fsS http://127.0.0.1:8008/health >/dev/null 2>&1; do sleep 0.3; done",
                ].join(" && "),
            );
            assert.equal(edit.code, 0, edit.stderr);
            pidsEdited = services();
            editedDigests = digests();
            drift = await timed("preview (drift, refreshing)", () => preview(settings()));
            afterPreview = {
                digests: digests(),
                secretsMode: sh("stat -c %a /etc/matrix-synapse/secrets.yaml").stdout,
            };
            withoutRefresh = await timed("up --refresh=false (drift)", () => deploy(settings(), { refresh: false }));
            assert.equal(withoutRefresh.code, 0, explainFailure(withoutRefresh));
            restored = await timed("up (drift, refreshing)", () => deploy(settings()));
            assert.equal(restored.code, 0, explainFailure(restored));
            console.log(`drift repaired: ${ran(restored).join(", ")}`);
        });
        it("preview names each edited file, what differs, and changes nothing", () => {
            assert.equal(drift.code, 0, explainFailure(drift));
            const files = drift.steps.filter((s) => s.type === MANAGED_FILE && s.op === "update");
            assert.deepEqual(files.map((s) => s.name).sort(), edited);
            // The refresh read each file back: what it found different is that step's diff.
            const refreshed = drift.steps.filter((s) => s.type === MANAGED_FILE && s.op === "refresh");
            const diffs = Object.fromEntries(refreshed.map((s) => [s.name, s.diffs]));
            assert.ok(diffs["synapse-homeserver-yaml"]!.includes("sha256"), JSON.stringify(diffs));
            assert.ok(diffs["synapse-secrets-yaml"]!.includes("mode"), JSON.stringify(diffs));
            assert.match(afterPreview.secretsMode, /^644/);
            assert.notEqual(editedDigests, clean);
            assert.equal(afterPreview.digests, editedDigests, "the preview wrote nothing");
        });
        it("without a refresh, Pulumi's state still matches the program: nothing runs", () => {
            assert.deepEqual(withoutRefresh.changed, []);
        });
        it("up rewrites exactly the edited files, restarts Synapse and reloads nginx: what the preview listed", () => {
            assert.deepEqual(restored.changed, [...edited, "nginx-sites", "synapse-service"].sort());
            assert.deepEqual(drift.changed, restored.changed);
            assert.equal(digests(), clean);
            assert.equal(
                sh("stat -c '%a %U %G' /etc/matrix-synapse/secrets.yaml").stdout.trim(),
                "640 root matrix-synapse",
            );
        });
        it("restarted only Synapse; nginx reloaded (new workers, same master); PostgreSQL untouched", () => {
            const now = services();
            assert.notEqual(now.synapse, pidsEdited.synapse);
            assert.equal(now.nginx, pidsEdited.nginx);
            assert.notEqual(now.nginxWorkers, pidsEdited.nginxWorkers);
            assert.equal(now.postgres, pidsEdited.postgres);
        });
        it("serves the restored settings", async () => {
            const res = await get(`https://${HS}/_matrix/client/v3/register`, { method: "POST", body: "{}" });
            assert.equal(res.status, 401, "registration is open again (401 asks for auth)");
            const config = (await (await get(`https://${EL}/config.json`)).json()) as { brand: string };
            assert.equal(config.brand, "Element");
        });
    });

    describe("replacements (pulumi up --replace): a delete never undoes a newer create", () => {
        let replaced: Run;
        let certBefore: string;
        const serial = () => ctx.server.certificateSerials(HS).stored;
        beforeAll(async () => {
            certBefore = serial();
            replaced = await timed("up --replace (service, certificate, firewall)", () =>
                deploy(settings(), {
                    replace: ["synapse-service", "nginx-certificate-homeserver", "firewall-install"],
                }),
            );
            assert.equal(replaced.code, 0, explainFailure(replaced));
            console.log(`replaced: ${ran(replaced).join(", ")}`);
        });
        it("deleted each old one before creating its replacement", () => {
            for (const name of ["synapse-service", "nginx-certificate-homeserver", "firewall-install"]) {
                const ops = replaced.steps.filter((s) => s.name === name);
                const del = ops.find((s) => s.op === "delete-replaced");
                const create = ops.find((s) => s.op === "create-replacement");
                assert.ok(del && create, `${name}: ${ops.map((s) => s.op).join(", ")}`);
                assert.ok(del.endSeq < create.startSeq, `${name}: delete before create`);
            }
        });
        it("left Synapse running, a new certificate served, the firewall loaded", async () => {
            assert.equal(
                sh("systemctl is-active matrix-synapse matrix-pulumi-firewall").stdout.trim(),
                "active\nactive",
            );
            assert.equal((await get(`https://${HS}/_matrix/client/versions`)).status, 200);
            const cert = ctx.server.certificateSerials(HS);
            assert.notEqual(cert.stored, certBefore, "pebble issued a new certificate");
            assert.equal(cert.served, cert.stored, "nginx serves it");
            assert.match(sh("nft list chain inet matrix_pulumi input").stdout, /policy drop/);
        });
        it("kept the user and the message", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("SSH key rotation: a new key authorized, set in the stack, the old one removed", () => {
        let rotated: Run;
        let afterRemoval: Run;
        let accepted: string;
        let newFingerprint: string;
        beforeAll(async () => {
            const keyPath = path.join(ctx.run, "key-rotated");
            spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "rotated", "-f", keyPath]);
            newFingerprint = spawnSync("ssh-keygen", ["-lf", `${keyPath}.pub`], { encoding: "utf8" }).stdout.split(
                " ",
            )[1]!;
            sh("cat >> /root/.ssh/authorized_keys", readFileSync(`${keyPath}.pub`, "utf8"));
            const since = sh("date '+%Y-%m-%d %H:%M:%S'").stdout.trim();
            const newKey = readFileSync(keyPath, "utf8");
            rotated = await timed("up (new SSH key)", () => deploy(stackConfig(current, newKey)));
            assert.equal(rotated.code, 0, explainFailure(rotated));
            accepted = sh(
                `journalctl -u ssh --since '${since}' -o cat --no-pager | grep 'Accepted publickey' || true`,
            ).stdout;
            // Only the new key is authorized from now on; the checks below use it too.
            sh(
                `grep -v ' matrix-e2e$' /root/.ssh/authorized_keys > /root/.ssh/k && mv /root/.ssh/k /root/.ssh/authorized_keys`,
            );
            ctx.host.keyPath = keyPath;
            ctx.host.privateKey = newKey;
            afterRemoval = await timed("preview (old key removed)", () => ctx.stack.preview({ expectNoChanges: true }));
            console.log(`key rotation: up changed ${ran(rotated).length} steps`);
        });
        it("pulumi up, refreshing first, succeeded and reached the host with the new key", () => {
            assert.ok(accepted.includes(newFingerprint), accepted);
        });
        it("with the old key removed, the next preview (refreshing every file) finds nothing to change", () => {
            assert.equal(afterRemoval.code, 0, explainFailure(afterRemoval));
            assert.deepEqual(afterRemoval.changed, []);
            assert.ok(afterRemoval.steps.some((s) => s.type === MANAGED_FILE && s.op === "refresh"));
        });
        it("the old key no longer gets in", () => {
            const old = spawnSync("ssh", [
                "-i",
                path.join(ctx.server.dir, "key"),
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                `root@${ctx.host.guestIp}`,
                "true",
            ]);
            assert.notEqual(old.status, 0);
        });
    });

    describe("backups (matrix:backup)", () => {
        let applied: { preview: Run; up: Run };
        let newest: string;
        beforeAll(async () => {
            current = { ...current, backup: { retention: 2 } };
            applied = await change("backup.retention", settings());
        });
        it("changed only the backup timer step", () => {
            assert.deepEqual(applied.up.changed, ["backup-timer"]);
            assert.deepEqual(applied.preview.changed, applied.up.changed);
            assert.equal(sh("systemctl is-enabled matrix-synapse-backup.timer").stdout.trim(), "enabled");
        });
        it("backs up database, signing key and media, keeping the newest two", async () => {
            for (let i = 0; i < 3; i++) {
                const run = sh(
                    "systemctl start matrix-synapse-backup.service && journalctl -u matrix-synapse-backup -n 1 -o cat",
                );
                assert.equal(run.code, 0, run.stderr);
                await new Promise((r) => setTimeout(r, 1100)); // folder names have one-second resolution
            }
            const folders = sh("find /var/backups/matrix-synapse -mindepth 1 -maxdepth 1 -type d | sort")
                .stdout.trim()
                .split("\n");
            assert.equal(folders.length, 2, folders.join(" "));
            newest = folders[1]!;
            const files = sh(`cd ${newest} && stat -c '%n %a' database.dump signing.key media_store.tar`).stdout.trim();
            assert.equal(files, "database.dump 600\nsigning.key 600\nmedia_store.tar 600");
            assert.match(sh(`tar -tf ${newest}/media_store.tar | wc -l`).stdout.trim(), /^[1-9]/);
            assert.match(
                sh("ls /var/backups/matrix-synapse").stdout,
                /pre-upgrade-1\.162\.0-to-/,
                "kept pre-upgrade dump",
            );
        });
        it("restores: drop the database, restore, the user logs in and the message is there", async () => {
            const drop = sh(
                "systemctl stop matrix-synapse && runuser -u postgres -- dropdb --force synapse && echo dropped",
            );
            assert.equal(drop.stdout.trim(), "dropped", drop.stderr);
            const restore = await timed("checks: restore", () => sh(`matrix-synapse-restore ${newest}`));
            assert.equal(restore.code, 0, restore.stderr);
            const locale = sh(
                `runuser -u postgres -- psql -qAt -c "SELECT datcollate, datctype FROM pg_database WHERE datname = 'synapse'"`,
            );
            assert.equal(locale.stdout.trim(), "C|C");
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("declared users (matrix:users)", () => {
        let added: { preview: Run; up: Run };
        let passwords: Record<string, string>;
        beforeAll(async () => {
            current = { ...current, users: [{ name: "carol", admin: true }, { name: "dave" }] };
            added = await change("add users", settings());
            passwords = (await ctx.stack.outputs(true)).userPasswords as Record<string, string>;
        });
        it("ran only the new accounts' steps", () => {
            assert.deepEqual(added.up.changed, [
                "users",
                "users-carol",
                "users-carol-password",
                "users-dave",
                "users-dave-password",
            ]);
            assert.deepEqual(added.preview.changed, added.up.changed);
        });
        it("created accounts that log in with their output passwords, carol as admin", async () => {
            const carol = await matrixClient("carol", passwords.carol!);
            assert.equal(carol.getUserId(), `@carol:${DOMAIN}`);
            const dave = await matrixClient("dave", passwords.dave!);
            assert.equal(dave.getUserId(), `@dave:${DOMAIN}`);
            // The admin API is not proxied at all; ask Synapse itself through the tunnel.
            const proxied = await get(`https://${HS}/_synapse/admin/v1/users/@carol:${DOMAIN}/admin`, {
                headers: { Authorization: `Bearer ${carol.getAccessToken()}` },
            });
            assert.equal(proxied.status, 404);
            const admin = await withTunnel(target(), async (base) => {
                const res = await fetch(`${base}/_synapse/admin/v1/users/@carol:${DOMAIN}/admin`, {
                    headers: { Authorization: `Bearer ${carol.getAccessToken()}` },
                });
                return (await res.json()) as { admin: boolean };
            });
            assert.equal(admin.admin, true);
        });
        it("registers a one-off account with npm run register-user, once", async () => {
            const reader = () => ({ config: () => rawConfig(settings()), registrationSharedSecret: () => secret });
            const { userId, password } = await registerFromStack(["erin"], reader);
            assert.equal(userId, `@erin:${DOMAIN}`);
            const erin = await matrixClient("erin", password!);
            assert.equal(erin.getUserId(), `@erin:${DOMAIN}`);
            await assert.rejects(registerFromStack(["erin"], reader), /M_USER_IN_USE/);
            await assert.rejects(registerFromStack(["Erin!"], reader), /usage: npm run register-user/);
        });
        it("previews no change afterwards", async () => {
            const again = await ctx.stack.preview({ expectNoChanges: true });
            assert.equal(again.code, 0, explainFailure(again));
        });
    });

    describe("the stack's state (pulumi stack export)", () => {
        it("kept every secret out of the stack's exported state (pulumi stack export)", async () => {
            const exported = await ctx.stack.export();
            const secrets = (await ctx.stack.outputs(true)) as { userPasswords: Record<string, string> };
            writeFileSync(path.join(ctx.run, "export.json"), exported);
            for (const [label, value] of [
                ["registration secret", secret],
                [
                    "SSH key",
                    ctx.host.privateKey
                        .split("\n")
                        .filter((l) => l.length >= 60)
                        .pop()!
                        .slice(0, 40),
                ],
                ["carol's password", secrets.userPasswords.carol!],
            ] as const) {
                assert.ok(!exported.includes(value), `${label} in plain text`);
            }
            // The values searched for are the real ones: the export shows them when asked to.
            const shown = await ctx.stack.export(true);
            assert.ok(shown.includes(secret) && shown.includes(secrets.userPasswords.carol!));
        });
    });

    describe("an Element release with a wrong checksum", () => {
        let bad: Run;
        beforeAll(async () => {
            bad = await timed("up (bad sha256)", () =>
                deploy(stackConfig({ ...current, element: { version: "1.12.30", sha256: "0".repeat(64) } })),
            );
        });
        it("fails at the release step, saying nothing was extracted", () => {
            assert.notEqual(bad.code, 0);
            assert.deepEqual(
                bad.steps.filter((s) => s.failed).map((s) => s.name),
                ["element-release"],
            );
            assert.match(bad.errors, /nothing was extracted/);
        });
        it("extracted nothing and kept serving the release in place", async () => {
            assert.equal(sh("ls /var/www/element/releases | grep -c '^v1.12.30' || true").stdout.trim(), "0");
            assert.match(sh("readlink /var/www/element/current").stdout, /\/v1\.12\.31-/);
            assert.equal((await get(`https://${EL}/`)).status, 200);
        });
    });

    describe("Debian 12's cluster left behind: PostgreSQL 15 on 5432 beside 17 on 5433", () => {
        // As a host upgraded from Debian 12 keeps it: bookworm's postgresql-15 package, its
        // 15/main on the default port (free again here), beside the program's 17/main on 5433.
        // (An upgrade makes 15/main first and 17/main on 5433 after it; here 17/main came first.)
        let kept: Run;
        let refused: Run;
        let legacy: Run;
        beforeAll(async () => {
            const install = sh(
                [
                    "set -e",
                    "echo 'deb http://deb.debian.org/debian bookworm main' > /etc/apt/sources.list.d/bookworm.list",
                    "apt-get -q update >/dev/null",
                    "DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends postgresql-15 >/dev/null",
                    // Made under Debian 12 before the upgrade; installed here after 17, the
                    // package leaves it to us: the same cluster, on the default port.
                    "pg_createcluster 15 main --start >/dev/null",
                    "runuser -u postgres -- psql --cluster 15/main -qc 'CREATE DATABASE legacy'",
                ].join("\n"),
            );
            assert.equal(install.code, 0, install.stderr);
            await ctx.server.stack.configure(settings().plain, settings().secrets);
            kept = await timed("preview (15/main beside)", () => ctx.stack.preview({ expectNoChanges: true }));
            refused = await timed("preview (database in 15/main)", () =>
                preview(stackConfig({ ...current, more: { postgres: { database: "legacy" } } })),
            );
            legacy = await timed("up (database in 15/main)", () =>
                deploy(stackConfig({ ...current, more: { postgres: { database: "legacy" } } })),
            );
            // The stack's own settings again, for the phases after this one.
            await ctx.server.stack.configure(settings().plain, settings().secrets);
        });
        afterAll(() => {
            sh(
                "pg_dropcluster 15 main --stop; DEBIAN_FRONTEND=noninteractive apt-get -q purge -y postgresql-15 >/dev/null; rm -f /etc/apt/sources.list.d/bookworm.list",
            );
        });

        it("planted what an upgrade leaves: 15/main on 5432 and the program's 17/main on 5433", () => {
            const clusters = sh("pg_lsclusters -h")
                .stdout.trim()
                .split("\n")
                .map((l) => l.split(/\s+/).slice(0, 4).join(" "));
            assert.deepEqual(clusters, ["15 main 5432 online", "17 main 5433 online"]);
        });

        it("keeps Synapse's 17/main on 5433: the preview changes nothing and names 15/main as left alone", () => {
            assert.equal(kept.code, 0, explainFailure(kept));
            assert.deepEqual(kept.changed, []);
            assert.match(
                kept.output,
                /PostgreSQL cluster 15\/main \(port 5432\) left alone; Synapse's database is in 17\/main \(port 5433\)/,
            );
        });

        it("refuses a stack whose database is in 15/main, preview and up alike, with Debian's upgrade as the fix", () => {
            for (const r of [refused, legacy]) {
                assert.notEqual(r.code, 0);
                assert.deepEqual(r.changed, []);
                assert.match(
                    r.errors,
                    /matrix:postgres\.database: the database legacy is in PostgreSQL cluster 15\/main \(port 5432\), but on Debian 13 \(trixie\) the program uses cluster 17\/main; move it there first, as Debian's upgrade does: `pg_dropcluster 17 main --stop` \(if it holds nothing of yours\), then `pg_upgradecluster 15 main`, then run again/,
                );
            }
        });

        it("left Synapse serving on 17/main", async () => {
            assert.match(sh("cat /etc/matrix-synapse/secrets.yaml").stdout, /port: 5433\n/);
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("destroy, keeping the data", () => {
        let destroyed: Run;
        beforeAll(async () => {
            // Back to the settings the stack had before the failed release.
            const restored = await timed("up (good release again)", () => deploy(settings()));
            assert.equal(restored.code, 0, explainFailure(restored));
            destroyed = await timed("destroy (keep data)", () => ctx.stack.destroy());
            assert.equal(destroyed.code, 0, explainFailure(destroyed));
        });
        it("deleted every resource, dependents first", () => {
            const order = destroyed.steps.filter((s) => s.op === "delete").map((s) => s.name);
            const at = (n: string) => order.indexOf(n);
            assert.ok(at("element-site") < at("nginx-sites"));
            assert.ok(at("nginx-sites") < at("synapse-service"));
            assert.ok(at("synapse-service") < at("synapse-data"));
            assert.ok(at("postgres-database") < at("postgres-data"));
            assert.equal(destroyed.steps.filter((s) => s.failed).length, 0);
        });
        it("took away the sites, the certificates, the firewall and the Synapse service", () => {
            assert.equal(sh("ls /etc/nginx/sites-enabled | grep -c '^matrix-' || true").stdout.trim(), "0");
            assert.equal(sh("ls /etc/nginx/sites-available | grep -c '^matrix-' || true").stdout.trim(), "0");
            assert.equal(sh(`test -e /etc/letsencrypt/live/${HS} && echo yes || echo no`).stdout.trim(), "no");
            assert.equal(sh("systemctl is-active matrix-synapse || true").stdout.trim(), "inactive");
            assert.equal(sh("systemctl is-enabled matrix-synapse || true").stdout.trim(), "disabled");
            assert.equal(
                sh("nft list table inet matrix_pulumi >/dev/null 2>&1 && echo loaded || echo gone").stdout.trim(),
                "gone",
            );
            assert.equal(sh("systemctl is-active nginx postgresql@17-main").stdout.trim(), "active\nactive");
        });
        it("stopped monitoring and removed its files, keeping Prometheus' data", () => {
            const units =
                "prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter matrix-pulumi-metrics.timer";
            assert.equal(
                sh(`systemctl is-active ${units} || true`).stdout.trim(),
                Array(5).fill("inactive").join("\n"),
            );
            assert.equal(sh("test -e /etc/prometheus/matrix-pulumi && echo yes || echo no").stdout.trim(), "no");
            assert.equal(sh("ls /etc/systemd/system | grep -c '^prometheus.*\\.d$' || true").stdout.trim(), "0");
            assert.equal(sh("test -d /var/lib/prometheus/metrics2 && echo kept").stdout.trim(), "kept");
        });
        it("kept the database, the media store and the signing key", () => {
            const db = sh(
                `runuser -u postgres -- psql -qAt -c "SELECT count(*) FROM pg_database WHERE datname = 'synapse'"`,
            );
            assert.equal(db.stdout.trim(), "1");
            assert.equal(sh("test -s /var/lib/matrix-synapse/signing.key && echo yes").stdout.trim(), "yes");
            const media = sh("find /var/lib/matrix-synapse/media_store -type f -size +10M | wc -l");
            assert.equal(media.stdout.trim(), "1", "the 20 MB upload");
        });
    });

    describe("a new deploy onto the kept data", () => {
        beforeAll(async () => {
            const again = await timed("up (onto kept data)", () => deploy(settings()));
            assert.equal(again.code, 0, explainFailure(again));
        });
        it("serves the same users and messages", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("destroy with purgeOnDestroy", () => {
        let purging: { preview: Run; up: Run };
        beforeAll(async () => {
            // As with any delete script: the flag reaches the host through an update first.
            current = { ...current, purgeOnDestroy: true };
            purging = await change("purgeOnDestroy", settings());
            const destroyed = await timed("destroy (purge)", () => ctx.stack.destroy());
            assert.equal(destroyed.code, 0, explainFailure(destroyed));
        });
        it("updated only the three data steps before the destroy", () => {
            assert.deepEqual(purging.up.changed, ["element-data", "postgres-data", "synapse-data"]);
            assert.deepEqual(purging.preview.changed, purging.up.changed);
        });
        it("dropped the database and role and removed Synapse's data and Element", () => {
            const db = sh(
                `runuser -u postgres -- psql -qAt -c "SELECT count(*) FROM pg_database WHERE datname = 'synapse'"`,
            );
            assert.equal(db.stdout.trim(), "0");
            const role = sh(
                `runuser -u postgres -- psql -qAt -c "SELECT count(*) FROM pg_roles WHERE rolname = 'synapse'"`,
            );
            assert.equal(role.stdout.trim(), "0");
            for (const p of ["/var/lib/matrix-synapse", "/etc/matrix-synapse", "/opt/synapse", "/var/www/element"]) {
                assert.equal(sh(`test -e ${p} && echo present || echo absent`).stdout.trim(), "absent", p);
            }
        });
    });
});
