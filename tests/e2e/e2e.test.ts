// End to end: the program deploys a homeserver to a real Debian 12 host (systemd-nspawn), with
// real PostgreSQL, Synapse from PyPI, nginx, certbot against pebble (HTTP-01 validated for
// real), and a real Matrix client. Only the Pulumi engine and Cloudflare are stood in for
// (tests/e2e/engine.ts). Needs root. Run with `npm run test:e2e`.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { fetch } from "undici";
import type { EngineResult } from "./engine";
import { registerUser, withTunnel } from "../../lib/registerUser";
import { registerFromStack } from "../../scripts/register-user";
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
    hostChecks,
    HS,
    httpChecks,
    lastMessages,
    MANAGED_FILE,
    matrixClient,
    NEW_SYNAPSE,
    OLD_SYNAPSE,
    resolver,
    seesMessage,
    servedSynapseVersion,
    services,
    sh,
    stackConfig,
    startSession,
    stopSession,
    target,
    timed,
    timings,
} from "./session";

/** The stack's settings after the config-change and upgrade phases. */
const CURRENT = {
    synapse: { enableRegistration: true, version: NEW_SYNAPSE },
    backup: { retention: 2 },
    users: [{ name: "carol", admin: true }, { name: "dave" }],
};

describe("e2e: a homeserver on a real host", () => {
    let first: EngineResult;
    let secret: string;
    const alicePassword = randomBytes(12).toString("hex");
    let roomId: string;
    const message = `hello from e2e ${Date.now()}`;

    beforeAll(async () => {
        await startSession(path.join(CACHE, "run"));
        first = await timed("deploy (cold)", () => deploy(stackConfig()));
        for (const [c, s] of componentTimes(first)) timings.push([`  deploy ${c}`, s]);
        assert.equal(first.error, undefined, explainFailure(first));
        secret = String(first.outputs.registrationSharedSecret);
    });

    afterAll(stopSession);

    it("ran every step once, in the program's order", () => {
        const commands = first.steps.filter((s) => s.type === COMMAND);
        assert.equal(commands.length, 15);
        assert.ok(commands.every((s) => s.action === "create"));
        const files = first.steps.filter((s) => s.type === MANAGED_FILE);
        assert.equal(files.length, 9);
        assert.ok(files.every((s) => s.action === "create"));
        const end = (n: string) => first.steps.find((s) => s.name === n)!.end;
        const start = (n: string) => first.steps.find((s) => s.name === n)!.start;
        assert.ok(start("nginx-certificate-homeserver") >= end("dns-homeserver-a"));
        assert.ok(start("synapse-service") >= end("postgres-database"));
        assert.ok(start("synapse-service") >= end("synapse-secrets-yaml"));
        assert.ok(start("nginx-sites") >= end("nginx-homeserver-vhost"));
        assert.ok(start("nginx-sites") >= end("synapse-service"));
        assert.ok(start("element-site") >= end("nginx-sites"));
    });

    httpChecks();
    hostChecks();

    it("renews certificates (dry run) and has the reload hook", () => {
        // A dry run without --server would switch to Let's Encrypt staging (README: renewal).
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

    describe("re-running every create script against the same host", () => {
        let rerun: EngineResult;
        beforeAll(async () => {
            rerun = await timed("deploy (re-run all)", () => deploy(stackConfig(), "recreate"));
            assert.equal(rerun.error, undefined, explainFailure(rerun));
        });
        it("ran all 15 scripts and wrote all 9 files again, and kept the secrets", () => {
            assert.equal(rerun.steps.filter((s) => s.type === COMMAND && s.action === "create").length, 15);
            assert.equal(rerun.steps.filter((s) => s.type === MANAGED_FILE && s.action === "create").length, 9);
            assert.equal(rerun.outputs.registrationSharedSecret, secret);
        });
        httpChecks();
        hostChecks();
        it("kept the user and the message", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("a config change: synapse.enableRegistration", () => {
        let change: EngineResult;
        let pidsBefore: ReturnType<typeof services>;
        beforeAll(async () => {
            pidsBefore = services();
            change = await timed("deploy (enableRegistration)", () =>
                deploy(stackConfig({ synapse: { enableRegistration: true } })),
            );
            assert.equal(change.error, undefined, explainFailure(change));
            const ran = change.steps.filter((s) => s.action !== "same").map((s) => `${s.name} (${s.action})`);
            console.log(`blast radius: ${ran.join(", ")}`);
        });
        it("re-ran only Synapse's config and restart steps", () => {
            assert.deepEqual(
                change.steps
                    .filter((s) => s.action !== "same")
                    .map((s) => s.name)
                    .sort(),
                ["synapse-homeserver-yaml", "synapse-service"],
            );
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
        it("left nginx and PostgreSQL running as they were", () => {
            const after = services();
            assert.equal(after.nginx, pidsBefore.nginx);
            assert.equal(after.postgres, pidsBefore.postgres);
        });
    });

    describe(`an upgrade: synapse.version ${OLD_SYNAPSE} → ${NEW_SYNAPSE}`, () => {
        let upgrade: EngineResult;
        beforeAll(async () => {
            upgrade = await timed("deploy (upgrade Synapse)", () =>
                deploy(stackConfig({ synapse: { enableRegistration: true, version: NEW_SYNAPSE } })),
            );
            assert.equal(upgrade.error, undefined, explainFailure(upgrade));
        });
        it("re-ran only the install and restart steps, backing up the database first", () => {
            const ran = upgrade.steps.filter((s) => s.action !== "same");
            assert.deepEqual(ran.map((s) => s.name).sort(), ["synapse-install", "synapse-service"]);
            const install = ran.find((s) => s.name === "synapse-install")!.stdout ?? "";
            const backup = /backup before upgrading from 1\.162\.0: (\S+\.dump)/.exec(install)?.[1];
            assert.ok(backup, install);
            assert.match(backup, new RegExp(`pre-upgrade-${OLD_SYNAPSE}-to-${NEW_SYNAPSE}-`));
            const listing = sh(`pg_restore --list ${backup} | grep -c 'TABLE DATA'`);
            assert.ok(Number(listing.stdout.trim()) > 50, `a real dump: ${listing.stdout}${listing.stderr}`);
            assert.equal(sh(`stat -c '%a' /var/backups/matrix-synapse`).stdout.trim(), "700");
        });
        it("runs the new release", async () => {
            assert.equal(await servedSynapseVersion(), NEW_SYNAPSE);
        });
        it("kept the users and the message", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("drift: files edited by hand on the host", () => {
        const upgraded = () => stackConfig({ synapse: { enableRegistration: true, version: NEW_SYNAPSE } });
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
        let preview: EngineResult;
        let afterPreview: { digests: string; secretsMode: string };
        let withoutRefresh: EngineResult;
        let restored: EngineResult;
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
            preview = await timed("preview --refresh (drift)", () => deploy(upgraded(), "preview"));
            assert.equal(preview.error, undefined, explainFailure(preview));
            afterPreview = {
                digests: digests(),
                secretsMode: sh("stat -c %a /etc/matrix-synapse/secrets.yaml").stdout,
            };
            withoutRefresh = await deploy(upgraded(), "apply", { refresh: false });
            assert.equal(withoutRefresh.error, undefined, explainFailure(withoutRefresh));
            restored = await timed("up --refresh (drift)", () => deploy(upgraded()));
            assert.equal(restored.error, undefined, explainFailure(restored));
            const ran = restored.steps.filter((s) => s.action !== "same").map((s) => `${s.name} (${s.action})`);
            console.log(`drift repaired: ${ran.join(", ")}`);
        });
        it("preview --refresh names each edited file, what differs, and changes nothing", () => {
            const files = preview.steps.filter((s) => s.type === MANAGED_FILE);
            assert.deepEqual(
                files
                    .filter((s) => s.action === "update")
                    .map((s) => s.name)
                    .sort(),
                edited,
            );
            const refreshed = Object.fromEntries(files.map((s) => [s.name, s.refreshed ?? []]));
            assert.deepEqual(refreshed["synapse-homeserver-yaml"], ["sha256"]);
            assert.deepEqual(refreshed["synapse-secrets-yaml"], ["mode"]);
            assert.deepEqual(refreshed["synapse-unit"], []);
            assert.match(afterPreview.secretsMode, /^644/);
            assert.notEqual(editedDigests, clean);
            assert.equal(afterPreview.digests, editedDigests, "the preview wrote nothing");
        });
        it("without a refresh, Pulumi's state still matches the program: nothing runs", () => {
            assert.deepEqual(
                withoutRefresh.steps.filter((s) => s.action !== "same").map((s) => s.name),
                [],
            );
        });
        it("up --refresh rewrites exactly the edited files, then restarts Synapse and reloads nginx", () => {
            const ran = restored.steps.filter((s) => s.action !== "same");
            assert.deepEqual(ran.map((s) => s.name).sort(), [...edited, "nginx-sites", "synapse-service"].sort());
            assert.equal(digests(), clean);
            assert.equal(
                sh("stat -c '%a %U %G' /etc/matrix-synapse/secrets.yaml").stdout.trim(),
                "640 root matrix-synapse",
            );
        });
        it("restarted only Synapse; nginx reloaded (new workers, same master); PostgreSQL untouched", () => {
            const after = services();
            assert.notEqual(after.synapse, pidsEdited.synapse);
            assert.equal(after.nginx, pidsEdited.nginx);
            assert.notEqual(after.nginxWorkers, pidsEdited.nginxWorkers);
            assert.equal(after.postgres, pidsEdited.postgres);
        });
        it("serves the restored settings", async () => {
            const res = await get(`https://${HS}/_matrix/client/v3/register`, { method: "POST", body: "{}" });
            assert.equal(res.status, 401, "registration is open again (401 asks for auth)");
            const config = (await (await get(`https://${EL}/config.json`)).json()) as { brand: string };
            assert.equal(config.brand, "Element");
        });
    });

    describe("backups (matrix:backup)", () => {
        let applied: EngineResult;
        let newest: string;
        beforeAll(async () => {
            const { users: _later, ...withoutUsers } = CURRENT;
            applied = await timed("deploy (backup retention)", () => deploy(stackConfig(withoutUsers)));
            assert.equal(applied.error, undefined, explainFailure(applied));
        });
        it("changed only the backup timer step", () => {
            assert.deepEqual(
                applied.steps.filter((s) => s.action !== "same").map((s) => s.name),
                ["backup-timer"],
            );
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
        let added: EngineResult;
        beforeAll(async () => {
            added = await timed("deploy (add users)", () => deploy(stackConfig(CURRENT)));
            assert.equal(added.error, undefined, explainFailure(added));
        });
        it("ran only the new accounts' steps", () => {
            const ran = added.steps.filter((s) => s.action !== "same").map((s) => s.name);
            assert.deepEqual(ran.sort(), ["users-carol", "users-carol-password", "users-dave", "users-dave-password"]);
        });
        it("created accounts that log in with their output passwords, carol as admin", async () => {
            const passwords = added.outputs.userPasswords as Record<string, string>;
            const carol = await matrixClient("carol", passwords.carol!);
            assert.equal(carol.getUserId(), `@carol:${DOMAIN}`);
            const dave = await matrixClient("dave", passwords.dave!);
            assert.equal(dave.getUserId(), `@dave:${DOMAIN}`);
            const isAdmin = async (user: string) =>
                (
                    await get(`https://${HS}/_synapse/admin/v1/users/@${user}:${DOMAIN}/admin`, {
                        headers: { Authorization: `Bearer ${carol.getAccessToken()}` },
                    })
                ).status;
            // The admin API is not proxied at all; ask Synapse itself through the tunnel.
            assert.equal(await isAdmin("carol"), 404);
            const admin = await withTunnel(target(), async (base) => {
                const res = await fetch(`${base}/_synapse/admin/v1/users/@carol:${DOMAIN}/admin`, {
                    headers: { Authorization: `Bearer ${carol.getAccessToken()}` },
                });
                return (await res.json()) as { admin: boolean };
            });
            assert.equal(admin.admin, true);
        });
        it("registers a one-off account with npm run register-user, once", async () => {
            const reader = () => ({ config: () => stackConfig(CURRENT), registrationSharedSecret: () => secret });
            const { userId, password } = await registerFromStack(["erin"], reader);
            assert.equal(userId, `@erin:${DOMAIN}`);
            const erin = await matrixClient("erin", password!);
            assert.equal(erin.getUserId(), `@erin:${DOMAIN}`);
            await assert.rejects(registerFromStack(["erin"], reader), /M_USER_IN_USE/);
            await assert.rejects(registerFromStack(["Erin!"], reader), /usage: npm run register-user/);
        });
        it("does nothing on the next apply", async () => {
            const again = await deploy(stackConfig(CURRENT));
            assert.equal(again.error, undefined);
            assert.deepEqual(
                again.steps.filter((s) => s.action !== "same").map((s) => s.name),
                [],
            );
        });
    });

    describe("an Element release with a wrong checksum", () => {
        let bad: EngineResult;
        beforeAll(async () => {
            bad = await timed("deploy (bad sha256)", () =>
                deploy(stackConfig({ ...CURRENT, element: { version: "1.12.30", sha256: "0".repeat(64) } })),
            );
        });
        it("fails at the release step, saying nothing was extracted", () => {
            assert.notEqual(bad.error, undefined);
            const failed = bad.steps.filter((s) => s.action === "failed");
            assert.deepEqual(
                failed.map((s) => s.name),
                ["element-release"],
            );
            assert.match(failed[0]!.error ?? "", /nothing was extracted/);
        });
        it("extracted nothing and kept serving the release in place", async () => {
            assert.equal(
                sh("test -e /var/www/element/releases/v1.12.30 && echo present || echo absent").stdout.trim(),
                "absent",
            );
            assert.equal(sh("readlink /var/www/element/current").stdout.trim(), "/var/www/element/releases/v1.12.29");
            assert.equal((await get(`https://${EL}/`)).status, 200);
        });
    });
    describe("destroy, keeping the data", () => {
        let destroyed: EngineResult;
        beforeAll(async () => {
            destroyed = await timed("destroy (keep data)", () => deploy(stackConfig(CURRENT), "destroy"));
            assert.equal(destroyed.error, undefined, explainFailure(destroyed));
        });
        it("deleted every resource, dependents first", () => {
            assert.ok(destroyed.steps.every((s) => s.action === "delete"));
            const order = destroyed.steps.map((s) => s.name);
            assert.ok(order.indexOf("element-site") < order.indexOf("nginx-sites"));
            assert.ok(order.indexOf("nginx-sites") < order.indexOf("synapse-service"));
            assert.ok(order.indexOf("synapse-service") < order.indexOf("postgres-database"));
        });
        it("took away the DNS records, sites, certificates and the Synapse service", async () => {
            await assert.rejects(resolver.resolve4(HS));
            assert.equal(sh("ls /etc/nginx/sites-enabled | grep -c '^matrix-' || true").stdout.trim(), "0");
            assert.equal(sh(`test -e /etc/letsencrypt/live/${HS} && echo yes || echo no`).stdout.trim(), "no");
            assert.equal(sh("systemctl is-active matrix-synapse || true").stdout.trim(), "inactive");
            assert.equal(sh("systemctl is-enabled matrix-synapse || true").stdout.trim(), "disabled");
            assert.equal(sh("systemctl is-active nginx postgresql@15-main").stdout.trim(), "active\nactive");
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
            const again = await timed("deploy (onto kept data)", () => deploy(stackConfig(CURRENT)));
            assert.equal(again.error, undefined, explainFailure(again));
        });
        it("serves the same users and messages", async () => {
            assert.ok(await seesMessage("alice", alicePassword, roomId, message));
        });
    });

    describe("destroy with purgeOnDestroy", () => {
        beforeAll(async () => {
            // As with the engine: the flag reaches the delete scripts through an update first.
            const purging = { ...CURRENT, purgeOnDestroy: true };
            const update = await timed("deploy (purgeOnDestroy)", () => deploy(stackConfig(purging)));
            assert.equal(update.error, undefined, explainFailure(update));
            const destroyed = await timed("destroy (purge)", () => deploy(stackConfig(purging), "destroy"));
            assert.equal(destroyed.error, undefined, explainFailure(destroyed));
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
