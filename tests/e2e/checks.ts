// The checks every e2e phase repeats (Jest tests): the host's state, and HTTP as a client sees it.
import assert from "node:assert/strict";
import * as tls from "node:tls";
import { it } from "@jest/globals";
import { ctx, DOMAIN, EL, get, HS, sh } from "./session";

/** The host's listening TCP sockets: a port's local addresses ("127.0.0.1:8008"), from `ss`. */
export function listeners(): (port: number) => string[] {
    const lines = sh("ss -Hltn").stdout.trim().split("\n");
    return (port) => lines.map((l) => l.split(/\s+/)[3] ?? "").filter((a) => a.endsWith(`:${port}`));
}

/** The host's checks; `postgresPort`: where its PostgreSQL cluster listens (the e2e host's is on 5433). */
export function hostChecks(postgresPort = 5432): void {
    it("keeps the database in C collation and ctype", () => {
        const r = sh(
            `runuser -u postgres -- psql -qAt -c "SELECT datcollate, datctype, pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'synapse'"`,
        );
        assert.equal(r.stdout.trim(), "C|C|UTF8");
    });
    it("keeps the secrets file readable by root and matrix-synapse only", () => {
        const r = sh("stat -c '%a %U %G' /etc/matrix-synapse/secrets.yaml");
        assert.equal(r.stdout.trim(), "640 root matrix-synapse");
        assert.equal(sh("runuser -u nobody -- cat /etc/matrix-synapse/secrets.yaml").code !== 0, true);
    });
    it("has Synapse and PostgreSQL listening on loopback only", () => {
        const local = listeners();
        assert.deepEqual(local(8008), ["127.0.0.1:8008"]);
        assert.ok(local(postgresPort).length > 0);
        for (const a of local(postgresPort))
            assert.match(a, new RegExp(`^(127\\.0\\.0\\.1|\\[::1\\]):${postgresPort}$`));
    });
}

export function httpChecks(): void {
    it("serves both well-known documents, exact, as JSON, with open CORS", async () => {
        const server = await get(`https://${DOMAIN}/.well-known/matrix/server`);
        assert.deepEqual(await server.json(), { "m.server": `${HS}:443` });
        assert.equal(server.headers.get("content-type"), "application/json");
        assert.equal(server.headers.get("access-control-allow-origin"), "*");
        const clientDoc = await get(`https://${DOMAIN}/.well-known/matrix/client`);
        assert.deepEqual(await clientDoc.json(), { "m.homeserver": { base_url: `https://${HS}` } });
        assert.equal(clientDoc.headers.get("access-control-allow-origin"), "*");
    });
    it("proxies the client and federation APIs through nginx, and nothing else", async () => {
        const versions = await get(`https://${HS}/_matrix/client/versions`);
        assert.equal(versions.status, 200);
        assert.ok(((await versions.json()) as { versions: string[] }).versions.length > 0);
        const fed = await get(`https://${HS}/_matrix/federation/v1/version`);
        assert.equal(((await fed.json()) as { server: { name: string } }).server.name, "Synapse");
        assert.equal((await get(`https://${HS}/`)).status, 404);
        assert.equal((await get(`https://${HS}/_synapse/admin/v1/register`)).status, 404);
    });
    it("serves Element with config.json pointing at the homeserver and its security headers", async () => {
        const index = await get(`https://${EL}/`);
        assert.equal(index.status, 200);
        assert.match(await index.text(), /element 1\.12\.29/);
        assert.equal(index.headers.get("x-frame-options"), "SAMEORIGIN");
        assert.equal(index.headers.get("x-content-type-options"), "nosniff");
        assert.equal(index.headers.get("content-security-policy"), "frame-ancestors 'self'");
        const config = (await (await get(`https://${EL}/config.json`)).json()) as {
            default_server_config: { "m.homeserver": { base_url: string; server_name: string } };
        };
        assert.deepEqual(config.default_server_config["m.homeserver"], {
            base_url: `https://${HS}`,
            server_name: DOMAIN,
        });
    });
    it("has a certificate from pebble covering each name", async () => {
        for (const name of [DOMAIN, HS, EL]) {
            const sans = await new Promise<string>((resolve, reject) => {
                const socket = tls.connect(
                    { host: ctx.host.guestIp, port: 443, servername: name, ca: ctx.acme.issuingRoot },
                    () => {
                        const cert = socket.getPeerCertificate();
                        socket.end();
                        if (!socket.authorized) reject(new Error(String(socket.authorizationError)));
                        else resolve(cert.subjectaltname ?? "");
                    },
                );
                socket.on("error", reject);
            });
            assert.match(sans, new RegExp(`DNS:${name.replace(/\./g, "\\.")}(,|$)`));
        }
    });
}
