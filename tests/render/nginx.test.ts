// The rendered nginx configuration in Debian's real nginx: `nginx -t`, then real requests over
// TLS (throwaway certificates at the paths certbot uses), in a private mount and network
// namespace so the machine's own /etc and ports are untouched. Needs root.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { beforeAll, describe, it } from "@jest/globals";
import { renderElementConfig, renderElementSite } from "../../render/element";
import { renderAcmeSite, renderApexSite, renderHomeserverSite, renderTlsSnippet } from "../../render/nginx";
import { renderNginxUpstreams, upstreamLayout, WORKER_PRESETS } from "../../render/workers";
import { MAS_LOOPBACK } from "../../render/mas";
import { rtcUrls, RTC_LOOPBACK } from "../../render/rtc";
import { run } from "./tools";

const domain = "example.org";
const hs = "matrix.example.org";
const el = "element.example.org";

interface Response {
    status: number;
    headers: [string, string][];
    body: string;
}

function header(r: Response, name: string): string[] {
    return r.headers.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v);
}

function parse(block: string): Response {
    // With a 100-continue or similar, the last header block is the answer.
    const parts = block.split(/\r\n\r\n/);
    let i = 0;
    while (i < parts.length - 1 && /^HTTP\/[\d.]+ 100/.test(parts[i]!)) i++;
    const [statusLine, ...lines] = parts[i]!.split("\r\n");
    const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(statusLine ?? "")?.[1] ?? 0);
    return {
        status,
        headers: lines.map((l) => {
            const c = l.indexOf(":");
            return [l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim()] as [string, string];
        }),
        body: parts
            .slice(i + 1)
            .join("\r\n\r\n")
            .trim(),
    };
}

/** Synapse's access tokens: `syt_<base64 localpart>_<random>_<check>`. */
const token = (user: string, device: string) =>
    `syt_${Buffer.from(user).toString("base64").replace(/=+$/, "")}_${device}Xk2${user}Q_1a2b3c`;
const users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];

describe("nginx configuration in real nginx", () => {
    const results = new Map<string, string>();
    beforeAll(() => {
        const dir = mkdtempSync(path.join(tmpdir(), "matrix-nginx-"));
        const put = (rel: string, content: string) => {
            mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
            writeFileSync(path.join(dir, rel), content);
        };
        put("etc/nginx/snippets/matrix-tls.conf", renderTlsSnippet());
        put("etc/nginx/sites-available/matrix-acme.conf", renderAcmeSite({ hosts: [domain, hs, el], ipv6: false }));
        put(
            "etc/nginx/sites-available/matrix-apex.conf",
            renderApexSite({
                domain,
                homeserverHost: hs,
                ipv6: false,
                support: {
                    contacts: [
                        { matrixId: `@admin:${domain}`, role: "admin" },
                        { email: `security@${domain}`, role: "security" },
                    ],
                    page: `https://${domain}/help`,
                },
                rtc: { serviceUrl: rtcUrls(hs).serviceUrl },
            }),
        );
        put(
            "etc/nginx/sites-available/matrix-homeserver.conf",
            renderHomeserverSite({
                homeserverHost: hs,
                maxUploadSize: "1M",
                ipv6: false,
                federationPort: false,
                rtc: { serviceUrl: rtcUrls(hs).serviceUrl },
                auth: true,
            }),
        );
        put("etc/nginx/sites-available/matrix-element.conf", renderElementSite({ elementHost: el, ipv6: false }));
        put("var/www/acme/.well-known/acme-challenge/token123", "token123.thumbprint");
        put("var/www/element/releases/v1/index.html", "<title>Element</title>");
        put("var/www/element/releases/v1/bundles/abc/app.js", "console.log(1)");
        put(
            "var/www/element/releases/v1/config.json",
            renderElementConfig({
                serverName: domain,
                homeserverHost: hs,
                brand: "Element",
                disableCustomUrls: false,
                registration: false,
            }),
        );
        run("ln", ["-s", "/var/www/element/releases/v1", path.join(dir, "var/www/element/current")]);
        // The "small" workers: nginx routes by path to stand-ins on each worker's port.
        const layout = upstreamLayout(WORKER_PRESETS.small);
        put("etc/nginx/conf.d/matrix-synapse-upstreams.conf", renderNginxUpstreams(layout));
        put(
            "ports",
            [
                ...[layout.main, ...layout.sync, ...layout.client, ...layout.media].map((a) => a.split(":")[1]),
                // MatrixRTC: LiveKit's API and lk-jwt-service.
                RTC_LOOPBACK.livekit,
                RTC_LOOPBACK.jwt,
                // Matrix Authentication Service's web listener.
                MAS_LOOPBACK.web,
            ].join(" "),
        );
        put("hosts", [domain, hs, el].join("\n"));
        const big = path.join(dir, "big.bin");
        const small = path.join(dir, "small.bin");
        writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 1));
        writeFileSync(small, Buffer.alloc(512 * 1024, 1));
        const requests: string[][] = [
            ["wk-server", domain, "443", "/.well-known/matrix/server", ""],
            ["wk-client", domain, "443", "/.well-known/matrix/client", ""],
            ["wk-support", domain, "443", "/.well-known/matrix/support", ""],
            ["apex-root", domain, "443", "/", ""],
            ["versions", hs, "443", "/_matrix/client/versions", ""],
            ["encoded", hs, "443", "/_matrix/federation/v1/query/profile%2Fx?user_id=%40a%3Aexample.org", ""],
            ["synapse-client", hs, "443", "/_synapse/client/pick_idp", ""],
            ["admin", hs, "443", "/_synapse/admin/v1/register", ""],
            ["hs-root", hs, "443", "/", ""],
            ["upload-small", hs, "443", "/_matrix/media/v3/upload", `--data-binary @${small}`],
            ["upload-big", hs, "443", "/_matrix/media/v3/upload", `--data-binary @${big}`],
            ["element-index", el, "443", "/", ""],
            ["element-config", el, "443", "/config.json", ""],
            ["element-bundle", el, "443", "/bundles/abc/app.js", ""],
            ["acme", hs, "80", "/.well-known/acme-challenge/token123", ""],
            ...users.flatMap((u) => [
                [`sync-${u}-a`, hs, "443", "/_matrix/client/v3/sync?timeout=0", `--oauth2-bearer ${token(u, "a")}`],
                [`sync-${u}-b`, hs, "443", `/_matrix/client/v3/sync?access_token=${token(u, "b")}`, ""],
            ]),
            ["sliding-sync", hs, "443", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", ""],
            ["create-room", hs, "443", "/_matrix/client/v3/createRoom", "--data-binary {}"],
            ["fed-send", hs, "443", "/_matrix/federation/v1/send/123", ""],
            ["messages", hs, "443", "/_matrix/client/v3/rooms/!r:example.org/messages", ""],
            ["media-download", hs, "443", "/_matrix/client/v1/media/download/example.org/abc", ""],
            ["http-redirect", hs, "80", "/_matrix/client/versions", ""],
            ["rtc-jwt", hs, "443", "/livekit/jwt/get_token", "--data-binary {}"],
            [
                "rtc-sfu",
                hs,
                "443",
                "/livekit/sfu/rtc?access_token=x",
                "--http1.1 -H Upgrade:websocket -H Connection:Upgrade",
            ],
            ["rtc-twirp", hs, "443", "/livekit/sfu/twirp/livekit.RoomService/CreateRoom", "--data-binary {}"],
            ["mas-login", hs, "443", "/_matrix/client/v3/login", "--data-binary {}"],
            ["mas-login-r0", hs, "443", "/_matrix/client/r0/login?x=1", ""],
            ["mas-logout-all", hs, "443", "/_matrix/client/v3/logout/all", "--data-binary {}"],
            ["mas-refresh", hs, "443", "/_matrix/client/v3/refresh", "--data-binary {}"],
            ["mas-page", hs, "443", "/auth/login?next=x", ""],
            ["mas-metadata", hs, "443", "/auth/.well-known/openid-configuration", ""],
            ["not-mas", hs, "443", "/_matrix/client/v3/login_token_x", ""],
        ];
        put("requests.tsv", requests.map((r) => r.join("\t")).join("\n") + "\n");

        // unshare needs the mount point to exist; /etc/letsencrypt does not before certbot.
        const created = !existsSync("/etc/letsencrypt");
        if (created) mkdirSync("/etc/letsencrypt");
        const res = run("unshare", ["--mount", "--net", "bash", path.join(__dirname, "nginx-harness.sh"), dir]);
        if (created) rmSync("/etc/letsencrypt", { recursive: true });
        rmSync(dir, { recursive: true, force: true });
        assert.equal(res.status, 0, res.stderr + res.stdout);
        for (const chunk of res.stdout.split(/^=== /m).slice(1)) {
            const nl = chunk.indexOf("\n");
            results.set(chunk.slice(0, nl), chunk.slice(nl + 1));
        }
    });

    const get = (name: string) => parse(results.get(name) ?? "");

    it("passes nginx -t", () => {
        assert.match(results.get("nginx -t") ?? "", /test is successful[\s\S]*exit 0/);
    });

    it("serves both well-known documents as exact JSON with one Content-Type and open CORS", () => {
        const server = get("wk-server");
        assert.equal(server.status, 200);
        assert.deepEqual(JSON.parse(server.body), { "m.server": `${hs}:443` });
        assert.deepEqual(header(server, "content-type"), ["application/json"]);
        assert.deepEqual(header(server, "access-control-allow-origin"), ["*"]);
        const client = get("wk-client");
        assert.deepEqual(JSON.parse(client.body), {
            "m.homeserver": { base_url: `https://${hs}` },
            // MatrixRTC's focus (matrix:rtc), as Element Call up to 0.23 reads it.
            "org.matrix.msc4143.rtc_foci": [{ type: "livekit", livekit_service_url: `https://${hs}/livekit/jwt` }],
        });
        assert.deepEqual(header(client, "access-control-allow-origin"), ["*"]);
        assert.equal(header(client, "strict-transport-security").length, 1);
        assert.equal(get("apex-root").status, 404);
    });

    it("serves the support document as the spec shapes it, with open CORS", () => {
        const support = get("wk-support");
        assert.equal(support.status, 200);
        assert.deepEqual(JSON.parse(support.body), {
            contacts: [
                { matrix_id: `@admin:${domain}`, role: "m.role.admin" },
                { email_address: `security@${domain}`, role: "m.role.security" },
            ],
            support_page: `https://${domain}/help`,
        });
        assert.deepEqual(header(support, "content-type"), ["application/json"]);
        assert.deepEqual(header(support, "access-control-allow-origin"), ["*"]);
    });

    it("proxies /_matrix and /_synapse/client to Synapse with the forwarding headers", () => {
        const versions = get("versions");
        assert.equal(versions.status, 200);
        const seen = JSON.parse(versions.body) as { path: string; headers: Record<string, string> };
        assert.equal(seen.path, "/_matrix/client/versions");
        assert.equal(seen.headers["X-Forwarded-For"], "127.0.0.1");
        assert.equal(seen.headers["X-Forwarded-Proto"], "https");
        assert.equal(seen.headers["Host"], `${hs}:443`);
        // Kept-alive upstream: nginx must not ask Synapse to close each connection.
        assert.notEqual(seen.headers["Connection"], "close");
        assert.match(header(versions, "strict-transport-security")[0] ?? "", /max-age=31536000/);
        assert.equal(get("synapse-client").status, 200);
    });

    it("proxies /livekit/jwt/ to lk-jwt-service and /livekit/sfu/ to LiveKit, prefix stripped, WebSocket upgrade passed", () => {
        const seen = (name: string) => {
            const r = get(name);
            assert.equal(r.status, 200, name);
            return JSON.parse(r.body) as { path: string; port: number; headers: Record<string, string> };
        };
        const jwt = seen("rtc-jwt");
        assert.deepEqual([jwt.port, jwt.path], [RTC_LOOPBACK.jwt, "/get_token"]);
        assert.equal(jwt.headers["X-Forwarded-For"], "127.0.0.1");
        const sfu = seen("rtc-sfu");
        assert.deepEqual([sfu.port, sfu.path], [RTC_LOOPBACK.livekit, "/rtc?access_token=x"]);
        assert.equal(sfu.headers["Upgrade"], "websocket");
        assert.equal(sfu.headers["Connection"], "upgrade");
        const twirp = seen("rtc-twirp");
        assert.deepEqual([twirp.port, twirp.path], [RTC_LOOPBACK.livekit, "/twirp/livekit.RoomService/CreateRoom"]);
    });

    it("sends MAS's pages under /auth/ and the compatibility routes to MAS, before any worker, under its prefix", () => {
        const seen = (name: string) => {
            const r = get(name);
            assert.equal(r.status, 200, name);
            return JSON.parse(r.body) as { path: string; port: number; headers: Record<string, string> };
        };
        for (const [name, path] of [
            ["mas-login", "/auth/_matrix/client/v3/login"],
            ["mas-login-r0", "/auth/_matrix/client/r0/login?x=1"],
            ["mas-logout-all", "/auth/_matrix/client/v3/logout/all"],
            ["mas-refresh", "/auth/_matrix/client/v3/refresh"],
            ["mas-page", "/auth/login?next=x"],
            ["mas-metadata", "/auth/.well-known/openid-configuration"],
        ] as const) {
            const r = seen(name);
            assert.deepEqual([name, r.port, r.path], [name, MAS_LOOPBACK.web, path]);
            assert.equal(r.headers["X-Forwarded-For"], "127.0.0.1", name);
        }
        // Another path that merely starts alike stays Synapse's (here its client worker's).
        assert.notEqual(seen("not-mas").port, MAS_LOOPBACK.web);
    });

    describe("with workers (the small preset): each path reaches the process Synapse's docs name", () => {
        const port = (name: string) => (JSON.parse(get(name).body) as { port: number }).port;
        const ports = (addresses: string[]) => addresses.map((a) => Number(a.split(":")[1]));
        const layout = upstreamLayout(WORKER_PRESETS.small);

        it("sends /sync and sliding sync to the sync workers, a user's every token to the same one", () => {
            for (const u of users) {
                assert.ok(ports(layout.sync).includes(port(`sync-${u}-a`)), `${u}: ${get(`sync-${u}-a`).body}`);
                // Another device (another token), sent in the query instead of the header.
                assert.equal(port(`sync-${u}-b`), port(`sync-${u}-a`), `${u}'s two tokens reached two workers`);
            }
            // And users are spread: both sync workers get some.
            assert.deepEqual(new Set(users.map((u) => port(`sync-${u}-a`))), new Set(ports(layout.sync)));
            assert.ok(ports(layout.sync).includes(port("sliding-sync")));
        });

        it("sends client reads, event sending and inbound federation to the client worker", () => {
            for (const name of ["versions", "create-room", "fed-send", "encoded"]) {
                assert.deepEqual([name, port(name)], [name, ports(layout.client)[0]]);
            }
        });

        it("sends media to the media worker, and what no worker serves to the main process", () => {
            assert.equal(port("upload-small"), ports(layout.media)[0]);
            assert.equal(port("media-download"), ports(layout.media)[0]);
            assert.equal(port("messages"), ports([layout.main])[0]);
            assert.equal(port("synapse-client"), ports([layout.main])[0]);
        });
    });

    it("passes the path through unre-encoded (federation signatures cover it)", () => {
        const seen = JSON.parse(get("encoded").body) as { path: string };
        assert.equal(seen.path, "/_matrix/federation/v1/query/profile%2Fx?user_id=%40a%3Aexample.org");
    });

    it("answers 404 for the admin API and everything else on the homeserver host", () => {
        assert.equal(get("admin").status, 404);
        assert.equal(get("hs-root").status, 404);
        assert.deepEqual(header(get("hs-root"), "x-content-type-options"), ["nosniff"]);
        assert.deepEqual(header(get("hs-root"), "x-frame-options"), ["SAMEORIGIN"]);
    });

    it("limits uploads to maxUploadSize", () => {
        assert.equal(get("upload-small").status, 200);
        assert.equal(JSON.parse(get("upload-small").body).received, 512 * 1024);
        assert.equal(get("upload-big").status, 413);
    });

    it("refuses TLS 1.1, which the same client negotiates with a server that offers it", () => {
        const control = results.get("tls11-control") ?? "";
        assert.match(control, /^New, TLSv1\.0, Cipher is /m, "the client speaks TLS 1.1 where it is offered");
        assert.match(control, /^\s*Protocol\s*: TLSv1\.1$/m);
        const ours = results.get("tls11-ours") ?? "";
        assert.match(ours, /alert protocol version|no protocols available|unsupported protocol/i, ours);
        assert.match(ours, /^New, \(NONE\), Cipher is \(NONE\)$/m, "no session with the rendered vhost");
    });

    it("serves Element with its security headers, revalidating entry points but not bundles", () => {
        const index = get("element-index");
        assert.equal(index.status, 200);
        assert.match(index.body, /<title>Element<\/title>/);
        const config = get("element-config");
        assert.equal(JSON.parse(config.body).default_server_config["m.homeserver"].base_url, `https://${hs}`);
        for (const r of [index, config, get("element-bundle")]) {
            assert.deepEqual(header(r, "x-frame-options"), ["SAMEORIGIN"]);
            assert.deepEqual(header(r, "x-content-type-options"), ["nosniff"]);
            assert.deepEqual(header(r, "content-security-policy"), ["frame-ancestors 'self'"]);
        }
        assert.deepEqual(header(index, "cache-control"), ["no-cache"]);
        assert.deepEqual(header(config, "cache-control"), ["no-cache"]);
        assert.deepEqual(header(get("element-bundle"), "cache-control"), []);
    });

    it("serves ACME challenges on port 80 and redirects everything else to https", () => {
        const acme = get("acme");
        assert.equal(acme.status, 200);
        assert.equal(acme.body, "token123.thumbprint");
        const redirect = get("http-redirect");
        assert.equal(redirect.status, 301);
        assert.deepEqual(header(redirect, "location"), [`https://${hs}/_matrix/client/versions`]);
    });
});
