// Matrix Authentication Service on a real host (matrix:auth), with the release tarball
// `npm run tools:mas` built from MAS's sources: a stack with accounts from before turns MAS on
// (syn2mas moves them), then a client does what Element X does: reads auth_metadata, registers
// itself (MSC2966), signs in with the authorization-code flow and PKCE through nginx, syncs, and
// has its session listed and revoked. Needs root; run by `npm run test:auth`.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import type { Run } from "../../lab/pulumi";
import { awaitMasBuild } from "../../lab/artifacts";
import { registerFromStack } from "../../scripts/register-user";
import { openElement, type ElementSession } from "../federation/browser";
import { MAS_ADMIN_CLIENT_ID, MAS_LOOPBACK, MAS_PATHS } from "../../render/mas";
import {
    CACHE,
    ctx,
    deploy,
    explainFailure,
    get,
    preview,
    publishDns,
    rawConfig,
    RELEASES,
    selfCheck,
    sh,
    SLOTS,
    startSession,
    stopSession,
    timed,
    type StackSettings,
} from "../e2e/session";

const RUN = path.join(CACHE, "run-auth");
const DOMAIN = "auth.test";
const HS = `matrix.${DOMAIN}`;
const EL = `element.${DOMAIN}`;
const ISSUER = `https://${HS}/auth/`;
// dave is the one who types a wrong password: MAS limits login attempts per account (and per address).
const USERS = [{ name: "alice", admin: true }, { name: "bob" }, { name: "dave" }];
const ARGV_SAMPLES = "/run/argv-samples";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let passwords: Record<string, string>;
/** The MAS release the stack names (the served 1.22.0 until the upgrade phase). */
let masRelease: { version: string; url: string; sha256: string } | undefined;
/** matrix:synapse.enableRegistration (on from the registration phase). */
let registration = false;
/** alice's access token from her first login through MAS (logins are rate-limited per address). */
let aliceToken: string;
/** Every run of the suite: no secret of MAS's may be in what they printed. */
const runs: Run[] = [];

function settings(over: { auth?: Record<string, unknown> | null; users?: unknown[] } = {}): StackSettings {
    const mas = masRelease ?? ctx.artifacts.mas;
    assert.ok(mas, "no MAS tarball: run npm run tools:mas (PULUMI_TOOLS)");
    return ctx.server.settings({
        // The real Element build: the browser test signs in with it through MAS.
        element: { ...ctx.artifacts.elements[RELEASES.real.key] },
        users: over.users ?? USERS,
        ...(registration ? { synapse: { enableRegistration: true } } : {}),
        more: over.auth === null ? {} : { auth: { mas, ...over.auth } },
    });
}
const withoutAuth = () => settings({ auth: null });

/** The stack's Element in Chromium, trusting the test CA, its names resolved to the host. */
const openStackElement = (): Promise<ElementSession> =>
    openElement({
        run: ctx.run,
        elementUrl: `https://${EL}`,
        caPem: ctx.acme.issuingRoot,
        hosts: { [EL]: ctx.host.guestIp, [HS]: ctx.host.guestIp, [DOMAIN]: ctx.host.guestIp },
    });

type Json = Record<string, unknown>;
async function json(url: string, init: Parameters<typeof get>[1] = {}): Promise<{ status: number; body: Json }> {
    const r = await get(url, init);
    const text = await r.text();
    let body: Json;
    try {
        body = JSON.parse(text) as Json;
    } catch {
        body = { text };
    }
    return { status: r.status, body };
}

/**
 * A password login (Synapse's before MAS, MAS's compatibility layer after). MAS allows 3 attempts
 * at once from one address, then one every 20 s (its default rate limit): a 429 waits and retries.
 */
async function passwordLogin(user: string, password: string): Promise<{ status: number; body: Json }> {
    for (let attempt = 0; ; attempt++) {
        const r = await json(`https://${HS}/_matrix/client/v3/login`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user }, password }),
        });
        if (r.status !== 429 || attempt >= 12) return r;
        await sleep(10_000);
    }
}
const whoami = (token: string) =>
    json(`https://${HS}/_matrix/client/v3/account/whoami`, { headers: { authorization: `Bearer ${token}` } });

/** MAS's admin API on the host (its internal listener is never proxied), with the program's admin client. */
function adminApi(pathAndQuery: string): Json {
    const out = sh(
        [
            "set -euo pipefail",
            `secret=$(cat ${MAS_PATHS.adminClientSecret})`,
            `tok=$(curl -fsS -u "${MAS_ADMIN_CLIENT_ID}:$secret" -d grant_type=client_credentials -d scope=urn:mas:admin http://127.0.0.1:${MAS_LOOPBACK.web}/auth/oauth2/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')`,
            `curl -gfsS -H "Authorization: Bearer $tok" 'http://127.0.0.1:${MAS_LOOPBACK.internal}/api/admin/v1${pathAndQuery}'`,
        ].join("\n"),
    );
    assert.equal(out.code, 0, out.stderr);
    return JSON.parse(out.stdout) as Json;
}

/** A browser's cookie jar and redirects, by hand: what an OAuth client's user agent does. */
class Browser {
    private cookies = new Map<string, string>();
    async request(url: string, init: { method?: string; form?: Record<string, string> } = {}) {
        const r = await get(url, {
            method: init.method ?? "GET",
            redirect: "manual",
            headers: {
                cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
                ...(init.form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
            },
            body: init.form ? new URLSearchParams(init.form).toString() : undefined,
        });
        for (const c of r.headers.getSetCookie()) {
            const [pair] = c.split(";");
            const i = pair!.indexOf("=");
            this.cookies.set(pair!.slice(0, i), pair!.slice(i + 1));
        }
        return { status: r.status, location: r.headers.get("location"), body: await r.text(), url };
    }
}

/**
 * The authorization-code flow with PKCE as Element X runs it: from the authorization endpoint,
 * through MAS's login page and its consent page, to the redirect URI with a code.
 */
async function authorize(
    browser: Browser,
    meta: Json,
    client: { id: string; redirect: string },
    user: string,
    password: string,
    scope: string,
): Promise<{ code: string; verifier: string; pages: string[] }> {
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const state = randomBytes(8).toString("hex");
    let url =
        `${String(meta.authorization_endpoint)}?` +
        new URLSearchParams({
            response_type: "code",
            client_id: client.id,
            redirect_uri: client.redirect,
            scope,
            state,
            code_challenge: challenge,
            code_challenge_method: "S256",
        }).toString();
    let method = "GET";
    let form: Record<string, string> | undefined;
    const pages: string[] = [];
    for (let hop = 0; hop < 40; hop++) {
        const r = await browser.request(url, { method, form });
        if (r.location) {
            const next = new URL(r.location, url).toString();
            if (next.startsWith(client.redirect)) {
                const params = new URL(next).searchParams;
                assert.equal(params.get("state"), state);
                const code = params.get("code");
                assert.ok(code, `no code in ${next}`);
                return { code, verifier, pages };
            }
            url = next;
            method = "GET";
            form = undefined;
            continue;
        }
        assert.equal(r.status, 200, `${url}: ${r.status} ${r.body.slice(0, 500)}`);
        const csrf = /name="csrf" value="([^"]+)"/.exec(r.body)?.[1];
        assert.ok(csrf, `no form at ${url}`);
        if (/name="password"/.test(r.body)) {
            // The login page again after a login: refused, or rate-limited (MAS's default); wait once in a while.
            if (pages.at(-1) === "login") {
                assert.doesNotMatch(r.body, /[Ii]nvalid credentials|[Ww]rong password/, "MAS refused the password");
                await sleep(10_000);
            }
            pages.push("login");
            form = { csrf, username: user, password };
        } else {
            pages.push("consent");
            form = { csrf };
        }
        method = "POST";
    }
    throw new Error("the flow did not reach the redirect URI");
}

beforeAll(async () => {
    await timed("[auth] MAS's tarball (npm run test:all builds it beside the other suites)", awaitMasBuild);
    await startSession(RUN, SLOTS.auth, [{ name: "auth", domain: DOMAIN }]);
});

afterAll(stopSession);

describe("a stack with accounts from before MAS", () => {
    let before: { bobToken: string; roomId: string };
    let planned: Run;
    let up: Run;
    beforeAll(async () => {
        const p = await timed("preview (no auth)", () => preview(withoutAuth()));
        assert.equal(p.code, 0, explainFailure(p));
        await publishDns(p);
        const first = await timed("up (no auth, two users)", () => deploy(withoutAuth()));
        assert.equal(first.code, 0, explainFailure(first));
        passwords = (await ctx.stack.outputs(true)).userPasswords as Record<string, string>;
        const login = await passwordLogin("bob", passwords.bob!);
        assert.equal(login.status, 200, JSON.stringify(login.body));
        const bobToken = String(login.body.access_token);
        const room = await json(`https://${HS}/_matrix/client/v3/createRoom`, {
            method: "POST",
            headers: { authorization: `Bearer ${bobToken}`, "content-type": "application/json" },
            body: JSON.stringify({ name: "before MAS" }),
        });
        assert.equal(room.status, 200, JSON.stringify(room.body));
        before = { bobToken, roomId: String(room.body.room_id) };
        const metadata = await get(`https://${HS}/_matrix/client/v1/auth_metadata`);
        assert.equal(metadata.status, 404, "auth_metadata answers before MAS is on");

        planned = await timed("preview (matrix:auth on)", () => preview(settings()));
        assert.equal(planned.code, 0, explainFailure(planned));
        // Every process's arguments on the host while MAS goes on, every 100 ms: no secret among them.
        sh(
            `systemd-run -q --unit=argv-sampler bash -c 'while :; do ps -eww -o args= >> ${ARGV_SAMPLES}; sleep 0.1; done'`,
        );
        up = await timed("up (matrix:auth on: MAS, syn2mas)", () => deploy(settings()));
        sh("systemctl stop argv-sampler");
        runs.push(first, planned, up);
        assert.equal(up.code, 0, explainFailure(up));
    });

    it("turns MAS on with exactly the changes the preview listed", () => {
        assert.deepEqual(up.changed, planned.changed);
        for (const name of ["auth-service", "auth-config-yaml", "synapse-secrets-yaml", "nginx-homeserver-vhost"]) {
            assert.ok(planned.changed.includes(name), `${name} in ${planned.changed.join(", ")}`);
        }
    });

    it("moved the accounts with syn2mas: their old passwords work through MAS, a wrong one is refused", async () => {
        assert.match(up.output, /moving Synapse's accounts, passwords and devices to MAS \(syn2mas\)/);
        assert.equal(sh(`test -e ${MAS_PATHS.state}/syn2mas.done`).code, 0);
        // alice through the compatibility layer here; bob through MAS's own login page below.
        const ok = await passwordLogin("alice", passwords.alice!);
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        aliceToken = String(ok.body.access_token);
        assert.equal((await whoami(aliceToken)).body.user_id, `@alice:${DOMAIN}`);
        const wrong = await passwordLogin("dave", `${passwords.dave}x`);
        assert.equal(wrong.status, 403, JSON.stringify(wrong.body));
        // The login answered is MAS's (its compatibility layer), not Synapse's, which is off.
        const flows = await json(`https://${HS}/_matrix/client/v3/login`);
        assert.ok(JSON.stringify(flows.body).includes("m.login.password"), JSON.stringify(flows.body));
        const users = adminApi("/users?filter[status]=active") as { data: { attributes: { username: string } }[] };
        assert.deepEqual(users.data.map((u) => u.attributes.username).sort(), ["alice", "bob", "dave"]);
    });

    it("keeps the sessions from before: bob's old access token still works, and so does his room", async () => {
        const me = await whoami(before.bobToken);
        assert.equal(me.status, 200, JSON.stringify(me.body));
        const state = await json(
            `https://${HS}/_matrix/client/v3/rooms/${encodeURIComponent(before.roomId)}/state/m.room.name`,
            { headers: { authorization: `Bearer ${before.bobToken}` } },
        );
        assert.equal(state.body.name, "before MAS");
    });

    it("previews no change on the next run", async () => {
        const again = await timed("preview (after MAS)", () => preview(settings()));
        assert.equal(again.code, 0, explainFailure(again));
        assert.deepEqual(again.changed, []);
    });
});

describe("what Element X does", () => {
    let meta: Json;
    let client: { id: string; redirect: string };
    let token: string;
    let deviceId: string;

    it("finds MAS through Synapse's auth_metadata (MSC2965), stable and unstable", async () => {
        for (const p of [
            "/_matrix/client/v1/auth_metadata",
            "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
        ]) {
            const r = await json(`https://${HS}${p}`);
            assert.equal(r.status, 200, `${p}: ${JSON.stringify(r.body)}`);
            assert.equal(r.body.issuer, ISSUER);
            meta = r.body;
        }
        for (const k of ["authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint"]) {
            assert.ok(String(meta[k]).startsWith(ISSUER), `${k}: ${String(meta[k])}`);
        }
        assert.ok((meta.code_challenge_methods_supported as string[]).includes("S256"));
        // And the discovery document itself, through nginx.
        assert.equal((await json(`${ISSUER}.well-known/openid-configuration`)).body.issuer, ISSUER);
    });

    it("registers itself as a client (MSC2966, dynamic client registration)", async () => {
        const redirect = `https://${EL}/callback`;
        const r = await json(String(meta.registration_endpoint), {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
                client_name: "matrix-pulumi test client",
                client_uri: `https://${EL}/`,
                application_type: "web",
                redirect_uris: [redirect],
                response_types: ["code"],
                grant_types: ["authorization_code", "refresh_token"],
                token_endpoint_auth_method: "none",
            }),
        });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        client = { id: String(r.body.client_id), redirect };
    });

    it("signs bob in with the authorization-code flow and PKCE, through MAS's pages, and syncs", async () => {
        deviceId = randomBytes(8).toString("hex").toUpperCase();
        const scope = `openid urn:matrix:client:api:* urn:matrix:client:device:${deviceId}`;
        const browser = new Browser();
        const { code, verifier, pages } = await authorize(browser, meta, client, "bob", passwords.bob!, scope);
        assert.deepEqual([...new Set(pages)], ["login", "consent"]);
        // A wrong verifier is refused; the right one gets the token.
        const exchange = (v: string) =>
            json(String(meta.token_endpoint), {
                method: "POST",
                headers: { "content-type": "application/x-www-form-urlencoded" },
                body: new URLSearchParams({
                    grant_type: "authorization_code",
                    code,
                    redirect_uri: client.redirect,
                    client_id: client.id,
                    code_verifier: v,
                }).toString(),
            });
        assert.equal((await exchange(randomBytes(32).toString("base64url"))).status, 400);
        const ok = await exchange(verifier);
        // The code is single-use: the wrong verifier spent it, so a fresh flow is needed.
        const tokens =
            ok.status === 200
                ? ok
                : await (async () => {
                      // The browser's MAS session stands: consent only, no password again.
                      const again = await authorize(browser, meta, client, "bob", passwords.bob!, scope);
                      assert.ok(!again.pages.includes("login"), again.pages.join(", "));
                      return json(String(meta.token_endpoint), {
                          method: "POST",
                          headers: { "content-type": "application/x-www-form-urlencoded" },
                          body: new URLSearchParams({
                              grant_type: "authorization_code",
                              code: again.code,
                              redirect_uri: client.redirect,
                              client_id: client.id,
                              code_verifier: again.verifier,
                          }).toString(),
                      });
                  })();
        assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
        token = String(tokens.body.access_token);
        const me = await whoami(token);
        assert.deepEqual([me.body.user_id, me.body.device_id], [`@bob:${DOMAIN}`, deviceId]);
        const sync = await json(`https://${HS}/_matrix/client/v3/sync?timeout=0`, {
            headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(sync.status, 200, JSON.stringify(sync.body).slice(0, 500));
    });

    it("has QR-code login's rendezvous (MSC4108): a session made, read back through nginx", async () => {
        const versions = await json(`https://${HS}/_matrix/client/versions`);
        assert.equal((versions.body.unstable_features as Record<string, boolean>)["org.matrix.msc4108"], true);
        const made = await get(`https://${HS}/_matrix/client/unstable/org.matrix.msc4108/rendezvous`, {
            method: "POST",
            headers: { "content-type": "text/plain" },
            body: "hello from the other device",
        });
        const answer = await made.text();
        assert.equal(made.status, 201, answer);
        const { url } = JSON.parse(answer) as { url: string };
        assert.ok(url.startsWith(`https://${HS}/`), url);
        const read = await get(url);
        assert.equal(read.status, 200);
        assert.equal(await read.text(), "hello from the other device");
    });

    it("lists the device's session in MAS, revokes it, and the token stops working", async () => {
        const bob = adminApi("/users/by-username/bob") as { data: { id: string } };
        const active = () =>
            (
                adminApi(`/oauth2-sessions?filter[user]=${bob.data.id}&filter[status]=active`) as {
                    data: { attributes: { scope: string } }[];
                }
            ).data.filter((s) => s.attributes.scope.includes(deviceId));
        assert.equal(active().length, 1);
        const revoke = await get(String(meta.revocation_endpoint), {
            method: "POST",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({ token, client_id: client.id }).toString(),
        });
        assert.equal(revoke.status, 200);
        assert.equal(active().length, 0);
        const me = await whoami(token);
        assert.equal(me.status, 401, JSON.stringify(me.body));
    });
});

describe("Element Web in Chromium, through MAS", () => {
    let element: ElementSession;
    let roomId: string;
    beforeAll(async () => {
        const room = await json(`https://${HS}/_matrix/client/v3/createRoom`, {
            method: "POST",
            headers: { authorization: `Bearer ${aliceToken}`, "content-type": "application/json" },
            body: JSON.stringify({ name: "Signed in with MAS" }),
        });
        assert.equal(room.status, 200, JSON.stringify(room.body));
        roomId = String(room.body.room_id);
        element = await openStackElement();
    });
    afterAll(() => element?.close());

    it("signs alice in through MAS's login and consent pages, and sends a message in her room", async () => {
        const pages = await element.signInThroughMas("alice", passwords.alice!);
        assert.equal(pages.length, 2, pages.join(", "));
        assert.ok(
            pages.every((p) => p.startsWith("/auth/")),
            pages.join(", "),
        );
        const text = `through MAS ${randomBytes(4).toString("hex")}`;
        await element.send("Signed in with MAS", text);
        // The message reaches the server, as alice sent it (Element shows its local echo first).
        let bodies: string[] = [];
        for (let i = 0; i < 60 && !bodies.includes(`@alice:${DOMAIN} m.room.message ${text}`); i++) {
            if (i > 0) await sleep(500);
            const messages = await json(
                `https://${HS}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=10`,
                { headers: { authorization: `Bearer ${aliceToken}` } },
            );
            bodies = (messages.body.chunk as { sender: string; type: string; content: { body?: string } }[]).map(
                (e) => `${e.sender} ${e.type} ${e.content.body ?? ""}`,
            );
        }
        assert.ok(bodies.includes(`@alice:${DOMAIN} m.room.message ${text}`), bodies.join("\n"));
        const file = await element.screenshot(path.join(ctx.run, "element-mas.png"));
        console.log(`screenshot: ${file}`);
    });
});

describe("Element's Create account, through MAS (matrix:synapse.enableRegistration)", () => {
    let planned: Run;
    let up: Run;
    let element: ElementSession;
    beforeAll(async () => {
        registration = true;
        planned = await timed("preview (registration on)", () => preview(settings()));
        assert.equal(planned.code, 0, explainFailure(planned));
        up = await timed("up (registration on)", () => deploy(settings()));
        runs.push(planned, up);
        assert.equal(up.code, 0, explainFailure(up));
        element = await openStackElement();
    });
    afterAll(() => element?.close());

    it("turns MAS's password registration on with exactly the changes the preview listed", () => {
        assert.deepEqual(up.changed, planned.changed);
        // Synapse restarts too: it serves MAS's discovery document (registration in it) as it read it at start.
        for (const name of ["auth-config-yaml", "synapse-service"]) {
            assert.ok(planned.changed.includes(name), `${name} in ${planned.changed.join(", ")}`);
        }
    });

    it("creates an account from Element's welcome page through MAS's pages; Synapse has it", async () => {
        const password = randomBytes(18).toString("base64url");
        const pages = await element.registerThroughMas("frank", password, "Frank from Element");
        assert.ok(pages.length >= 3 && pages.every((p) => p.startsWith("/auth/")), pages.join(", "));
        const profile = await json(
            `https://${HS}/_matrix/client/v3/profile/${encodeURIComponent(`@frank:${DOMAIN}`)}`,
            {
                headers: { authorization: `Bearer ${aliceToken}` },
            },
        );
        assert.equal(profile.body.displayname, "Frank from Element", JSON.stringify(profile.body));
        const login = await passwordLogin("frank", password);
        assert.equal(login.status, 200, JSON.stringify(login.body));
        const file = await element.screenshot(path.join(ctx.run, "element-mas-register.png"));
        console.log(`screenshot: ${file}`);
    });
});

describe("npm run self-check", () => {
    it("checks MAS: auth_metadata names it, its health through nginx, registration as configured, its unit", async () => {
        const report = await selfCheck(settings());
        const status = (id: string) => report.results.find((r) => r.id === id)?.status;
        assert.deepEqual(
            ["auth metadata", "auth health", "auth registration", "unit matrix-authentication-service"].map(status),
            ["pass", "pass", "pass", "pass"],
        );
        assert.equal(
            report.exitCode,
            0,
            report.results
                .filter((r) => r.status === "fail")
                .map((r) => r.detail)
                .join("\n"),
        );
    });

    it("fails with MAS stopped, saying what to do", async () => {
        sh("systemctl stop matrix-authentication-service");
        try {
            const report = await selfCheck(settings());
            assert.equal(report.exitCode, 1);
            const failed = report.results.filter((r) => r.status === "fail").map((r) => r.id);
            // (Synapse keeps MAS's metadata it fetched: auth_metadata still answers meanwhile.)
            for (const id of ["auth health", "unit matrix-authentication-service"]) {
                assert.ok(failed.includes(id), `${id} not among ${failed.join(", ")}`);
            }
        } finally {
            sh("systemctl start matrix-authentication-service");
        }
    });
});

describe("a new MAS release (matrix:auth.mas)", () => {
    let planned: Run;
    let up: Run;
    beforeAll(async () => {
        masRelease = ctx.artifacts.masNext!;
        planned = await timed("preview (MAS 1.22.1)", () => preview(settings()));
        assert.equal(planned.code, 0, explainFailure(planned));
        up = await timed("up (MAS 1.22.1)", () => deploy(settings()));
        runs.push(planned, up);
        assert.equal(up.code, 0, explainFailure(up));
    });

    it("changes exactly what the preview listed: the release, what names its folder, the restarts", () => {
        assert.deepEqual(up.changed, planned.changed);
        assert.deepEqual(planned.changed, [
            "auth-config-yaml",
            "auth-release",
            "auth-service",
            "auth-unit",
            "synapse-service",
        ]);
    });

    it("runs the new release, removes the old one, and still signs people in", async () => {
        const next = ctx.artifacts.masNext!;
        const unit = sh("systemctl show -p ExecStart --value matrix-authentication-service").stdout;
        assert.match(unit, new RegExp(`/v1\\.22\\.1-${next.sha256.slice(0, 12)}/mas-cli`));
        assert.equal(sh("ls /opt/matrix-authentication-service").stdout.trim(), `v1.22.1-${next.sha256.slice(0, 12)}`);
        const login = await passwordLogin("bob", passwords.bob!);
        assert.equal(login.status, 200, JSON.stringify(login.body));
    });
});

describe("accounts and the way back", () => {
    it("creates a new matrix:users account through MAS's admin API; it signs in with its output password", async () => {
        const users = [...USERS, { name: "carol" }];
        const up = await timed("up (carol added)", () => deploy(settings({ users })));
        runs.push(up);
        assert.equal(up.code, 0, explainFailure(up));
        assert.deepEqual(up.changed, ["users-carol", "users-carol-password"]);
        const carol = String(((await ctx.stack.outputs(true)).userPasswords as Record<string, string>).carol);
        const login = await passwordLogin("carol", carol);
        assert.equal(login.status, 200, JSON.stringify(login.body));
    });

    it("registers a one-off account with npm run register-user through MAS, once", async () => {
        const reader = () => ({
            config: () => rawConfig(settings()),
            registrationSharedSecret: () => {
                throw new Error("with matrix:auth, Synapse's shared secret is not used");
            },
        });
        const { userId, password } = await registerFromStack(["erin"], reader);
        assert.equal(userId, `@erin:${DOMAIN}`);
        const erin = await passwordLogin("erin", password!);
        assert.equal(erin.status, 200, JSON.stringify(erin.body));
        await assert.rejects(registerFromStack(["erin"], reader), /M_USER_IN_USE/);
    });

    it("keeps MAS's secrets in files only root and MAS read, none in its config", () => {
        const modes = sh(
            `stat -c '%n %a %U:%G' ${MAS_PATHS.config} ${MAS_PATHS.encryption} ${MAS_PATHS.keys}/*.pem ${MAS_PATHS.databasePassword} ${MAS_PATHS.synapseSecret} ${MAS_PATHS.adminClientSecret}`,
        ).stdout.trim();
        for (const line of modes.split("\n")) assert.match(line, / 640 root:matrix-mas$/, line);
        const config = sh(`cat ${MAS_PATHS.config}`).stdout;
        // Nor in the journal (every unit's, MAS's and the steps' included), nor in what any run printed.
        const journal = sh("journalctl --no-pager -q -o cat").stdout;
        const argv = sh(`cat ${ARGV_SAMPLES}`).stdout;
        // The sampler saw the steps (the syn2mas step among them): it ran while they did.
        assert.match(argv, /syn2mas/);
        const printed = runs.map((r) => r.output + r.errors).join("\n");
        for (const f of [
            MAS_PATHS.databasePassword,
            MAS_PATHS.synapseSecret,
            MAS_PATHS.adminClientSecret,
            MAS_PATHS.encryption,
        ]) {
            const value = sh(`cat ${f}`).stdout.trim();
            assert.ok(value.length >= 32, f);
            assert.ok(!config.includes(value), `${f} in the config`);
            assert.ok(!journal.includes(value), `${f} in the journal`);
            assert.ok(!printed.includes(value), `${f} in a run's output`);
            assert.ok(!argv.includes(value), `${f} in a process's arguments on the host`);
        }
    });

    it("refuses to turn MAS off, naming matrix:auth.allowDisable, and changes nothing", async () => {
        for (const off of [settings({ auth: { enabled: false } }), withoutAuth()]) {
            const p = await timed("preview (matrix:auth off)", () => preview(off));
            assert.notEqual(p.code, 0);
            assert.match(p.errors, /matrix:auth\.allowDisable/);
            assert.deepEqual(p.changed, []);
        }
        assert.equal(sh("systemctl is-active matrix-authentication-service").stdout.trim(), "active");
    });

    it("turns MAS off with matrix:auth.allowDisable: Synapse's logins are back, MAS's data stays", async () => {
        const off = settings({ auth: { enabled: false, allowDisable: true } });
        const planned = await timed("preview (matrix:auth off, allowDisable)", () => preview(off));
        assert.equal(planned.code, 0, explainFailure(planned));
        const up = await timed("up (matrix:auth off, allowDisable)", () => deploy(off));
        assert.equal(up.code, 0, explainFailure(up));
        assert.deepEqual(up.changed, planned.changed);
        assert.notEqual(sh("systemctl is-active matrix-authentication-service").stdout.trim(), "active");
        assert.equal((await get(`https://${HS}/_matrix/client/v1/auth_metadata`)).status, 404);
        // Synapse's own password login, with the hashes it had when MAS took over: alice's works,
        // carol's (made in MAS) is only in MAS.
        const alice = await passwordLogin("alice", passwords.alice!);
        assert.equal(alice.status, 200, JSON.stringify(alice.body));
        const carol = String(((await ctx.stack.outputs(true)).userPasswords as Record<string, string>).carol);
        assert.equal((await passwordLogin("carol", carol)).status, 403);
        // MAS's config, secrets and database stay on the host.
        assert.equal(sh(`test -s ${MAS_PATHS.config} && test -s ${MAS_PATHS.encryption}`).code, 0);
        const databases = sh("runuser -u postgres -- psql -qAt -c 'SELECT datname FROM pg_database'").stdout;
        assert.match(databases, /^matrix_auth$/m);
        const again = await timed("preview (after MAS off)", () => preview(off));
        assert.equal(again.code, 0, explainFailure(again));
        assert.deepEqual(again.changed, []);
    });
});
