// Shared fixtures of the self-check's tests (tests/selfcheck/*.test.ts): the names and the
// config, certificates made here by openssl (valid, expiring, expired, wrong name, chain left out,
// TLS 1.1 allowed), a key server whose response is signed here with an ed25519 key, a small DNS
// server, and a stub host whose commands (systemctl, pg_lsclusters, curl) bash runs. A test file
// calls useServers() to have them.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import * as dgram from "node:dgram";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { SecureContextOptions } from "node:tls";
import { afterAll, beforeAll, beforeEach } from "@jest/globals";
import { parseStackConfig } from "../../config";
import { makeNetwork, type CheckResult, type Exec, type Network } from "../../selfcheck";
import { baseConfig } from "../harness/run";

export const DOMAIN = "example.test";
export const HS = "matrix.example.test";
export const EL = "element.example.test";
export const MACHINE = { ipv4: "203.0.113.10", ipv6: "2001:db8::10" };
export const DAY = 86_400_000;

export const config = (overrides: Record<string, unknown> = {}) =>
    parseStackConfig(
        baseConfig({
            "matrix:domain": DOMAIN,
            "matrix:machine": MACHINE,
            "matrix:dns": undefined,
            "matrix:synapse": { maxUploadSize: "64K" },
            ...overrides,
        }),
        { cloudflareToken: true },
    );

export const byId = (results: CheckResult[], id: string): CheckResult => {
    const r = results.find((x) => x.id === id);
    assert.ok(r, `no result ${id} in ${results.map((x) => x.id).join(", ")}`);
    return r;
};

// ---- certificates, key, servers ----

export let dir: string;
export const pems: Record<string, string> = {};

function openssl(...args: string[]): void {
    execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
}

/** A leaf for `names`, signed by the intermediate CA, with `dates` (openssl ca's -days or -startdate/-enddate). */
function leaf(file: string, names: string[], dates: string[]): void {
    openssl(
        "req",
        ...["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${names[0]}`],
        ...["-addext", `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`],
        ...["-keyout", `${file}.key`, "-out", `${file}.csr`],
    );
    openssl(
        "ca",
        ...["-batch", "-notext", "-config", "ca.cnf", "-cert", "int.pem", "-keyfile", "int.key"],
        ...["-in", `${file}.csr`, "-out", `${file}.pem`, ...dates],
    );
    pems[`${file}.key`] = readFileSync(path.join(dir, `${file}.key`), "utf8");
    pems[`${file}.pem`] = readFileSync(path.join(dir, `${file}.pem`), "utf8");
}

function makeCertificates(): void {
    writeFileSync(
        path.join(dir, "ca.cnf"),
        [
            "[ca]",
            "default_ca = c",
            "[c]",
            "database = db/index.txt",
            "new_certs_dir = db",
            "serial = db/serial",
            "default_md = sha256",
            "policy = p",
            "unique_subject = no",
            "copy_extensions = copy",
            "[p]",
            "commonName = supplied",
            "[int]",
            "basicConstraints = critical,CA:TRUE",
            "keyUsage = critical,keyCertSign,cRLSign",
            "",
        ].join("\n"),
    );
    mkdirSync(path.join(dir, "db"));
    writeFileSync(path.join(dir, "db/index.txt"), "");
    writeFileSync(path.join(dir, "db/serial"), "01\n");
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        ...["req", "-x509", ...ec, "-days", "3650", "-subj", "/CN=Self-check Test Root"],
        ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ...["-keyout", "root.key", "-out", "root.pem"],
    );
    openssl("req", ...ec, "-subj", "/CN=Self-check Test Intermediate", "-keyout", "int.key", "-out", "int.csr");
    openssl(
        ...["x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial"],
        ...["-days", "3650", "-extfile", "ca.cnf", "-extensions", "int", "-out", "int.pem"],
    );
    pems.root = readFileSync(path.join(dir, "root.pem"), "utf8");
    pems.int = readFileSync(path.join(dir, "int.pem"), "utf8");
    leaf("good", [DOMAIN, HS, EL], ["-days", "90"]);
    leaf("soon", ["soon.example.test"], ["-days", "15"]);
    leaf("expiring", ["expiring.example.test"], ["-days", "3"]);
    leaf("expired", ["expired.example.test"], ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]);
    leaf("other", ["other.example.test"], ["-days", "90"]);
    leaf("chainless", ["chainless.example.test"], ["-days", "90"]);
    leaf("legacy", ["legacy.example.test"], ["-days", "90"]);
}

/** The homeserver's signing key; the key server's response is signed with it, here. */
const signingKey = generateKeyPairSync("ed25519");
export const publicKeyBase64 = Buffer.from(signingKey.publicKey.export({ format: "jwk" }).x!, "base64url")
    .toString("base64")
    .replace(/=+$/, "");
export const KEY_ID = "ed25519:a_test";

/**
 * A /_matrix/key/v2/server response: `fields` in canonical form are written out by hand here (not
 * with the code under test), signed, then sent pretty-printed in another key order.
 */
export function keyResponse(
    fields: { serverName: string; validUntil: number },
    tamper?: (doc: Record<string, unknown>) => void,
) {
    const canonical =
        `{"old_verify_keys":{},"server_name":${JSON.stringify(fields.serverName)},"valid_until_ts":${fields.validUntil},` +
        `"verify_keys":{"${KEY_ID}":{"key":"${publicKeyBase64}"}}}`;
    const signature = sign(null, Buffer.from(canonical), signingKey.privateKey).toString("base64").replace(/=+$/, "");
    const parsed = JSON.parse(canonical) as Record<string, unknown>;
    const doc: Record<string, unknown> = {
        verify_keys: parsed.verify_keys,
        valid_until_ts: parsed.valid_until_ts,
        signatures: { [fields.serverName]: { [KEY_ID]: signature } },
        server_name: parsed.server_name,
        old_verify_keys: parsed.old_verify_keys,
        unsigned: { note: "not signed" },
    };
    tamper?.(doc);
    return doc;
}

export const ELEMENT_HEADERS: Record<string, string> = {
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1; mode=block",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "Strict-Transport-Security": "max-age=31536000",
};

/** What the good server does; each test changes what it needs (reset before each). */
const defaults = () => ({
    wellKnownStatus: 200,
    contentTypes: ["application/json"],
    cors: ["*"],
    mServer: `${HS}:443`,
    baseUrl: `https://${HS}`,
    keys: keyResponse({ serverName: DOMAIN, validUntil: Date.now() + 7 * DAY }) as unknown,
    registrationOpen: false,
    uploadLimit: 64 * 1024,
    elementHeaders: { ...ELEMENT_HEADERS } as Record<string, string>,
    cacheControl: "no-cache" as string | undefined,
    elementBaseUrl: `https://${HS}`,
});
export let behaviour = defaults();
/** Bytes the last upload delivered (-1: refused before reading). */
export let uploaded = -1;

function homeserver(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): void {
    const b = behaviour;
    const host = (req.headers.host ?? "").replace(/:[0-9]+$/, "");
    const json = (status: number, body: unknown, headers: Record<string, string | string[]> = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(body));
    };
    const url = req.url ?? "/";
    if (url.startsWith("/.well-known/matrix/")) {
        if (host !== DOMAIN || b.wellKnownStatus !== 200) return json(404, { errcode: "M_NOT_FOUND" });
        res.setHeader("content-type", b.contentTypes);
        if (b.cors.length > 0) res.setHeader("access-control-allow-origin", b.cors);
        res.end(
            JSON.stringify(
                url.endsWith("/server") ? { "m.server": b.mServer } : { "m.homeserver": { base_url: b.baseUrl } },
            ),
        );
        return;
    }
    if (host === EL) {
        for (const [name, value] of Object.entries(b.elementHeaders)) res.setHeader(name, value);
        if (b.cacheControl) res.setHeader("cache-control", b.cacheControl);
        if (url === "/config.json") {
            return json(200, { default_server_config: { "m.homeserver": { base_url: b.elementBaseUrl } } });
        }
        res.writeHead(200, { "content-type": "text/html" });
        res.end("<html>element</html>");
        return;
    }
    if (url === "/_matrix/key/v2/server") return json(200, b.keys);
    if (url === "/_matrix/federation/v1/version") return json(200, { server: { name: "Synapse", version: "1.163.2" } });
    if (url === "/_matrix/client/versions") return json(200, { versions: ["v1.1", "v1.12"] });
    if (url === "/_matrix/client/v3/register" && req.method === "POST") {
        return b.registrationOpen
            ? json(401, { session: "s", flows: [{ stages: ["m.login.dummy"] }], params: {} })
            : json(403, { errcode: "M_FORBIDDEN", error: "Registration has been disabled" });
    }
    if (url === "/_matrix/media/v3/upload" && req.method === "POST") {
        // As nginx: a declared length over client_max_body_size is refused before the body is read.
        if (Number(req.headers["content-length"]) > b.uploadLimit) {
            uploaded = -1;
            res.writeHead(413, { "content-type": "text/html", connection: "close" });
            res.end("<html><center>413 Request Entity Too Large</center><hr><center>nginx</center></html>");
            return;
        }
        let n = 0;
        req.on("data", (c: Buffer) => (n += c.length));
        req.on("end", () => {
            uploaded = n;
            json(401, { errcode: "M_MISSING_TOKEN", error: "Missing access token" });
        });
        return;
    }
    json(404, { errcode: "M_UNRECOGNIZED" });
}

const servers: https.Server[] = [];
async function serve(name: string, extra: SecureContextOptions = {}, withChain = true): Promise<number> {
    const server = https.createServer(
        { key: pems[`${name}.key`], cert: pems[`${name}.pem`]! + (withChain ? pems.int : ""), ...extra },
        homeserver,
    );
    server.on("tlsClientError", () => undefined);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.address() as AddressInfo).port;
}

/** IPv6 text to its 16 bytes. */
function ipv6Bytes(address: string): Buffer {
    const [head = "", tail] = address.split("::");
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
    const b = Buffer.alloc(16);
    groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
    return b;
}

/** A DNS server for A and AAAA: NXDOMAIN for unknown names, no answers for other types. */
async function dnsServer(records: Record<string, { A?: string[]; AAAA?: string[] }>): Promise<dgram.Socket> {
    const socket = dgram.createSocket("udp4");
    socket.on("message", (msg, rinfo) => {
        let off = 12;
        const labels: string[] = [];
        while (msg[off] !== 0) {
            const len = msg[off]!;
            labels.push(msg.subarray(off + 1, off + 1 + len).toString("ascii"));
            off += len + 1;
        }
        const qtype = msg.readUInt16BE(off + 1);
        const question = msg.subarray(12, off + 5);
        const record = records[labels.join(".").toLowerCase()];
        const type = qtype === 1 ? "A" : qtype === 28 ? "AAAA" : undefined;
        const answers = (record && type ? (record[type] ?? []) : []).map((a) => {
            const data = type === "A" ? Buffer.from(a.split(".").map(Number)) : ipv6Bytes(a);
            const rr = Buffer.alloc(12);
            rr.writeUInt16BE(0xc00c, 0);
            rr.writeUInt16BE(qtype, 2);
            rr.writeUInt16BE(1, 4);
            rr.writeUInt32BE(60, 6);
            rr.writeUInt16BE(data.length, 10);
            return Buffer.concat([rr, data]);
        });
        const header = Buffer.alloc(12);
        header.writeUInt16BE(msg.readUInt16BE(0), 0);
        header.writeUInt16BE(0x8180 | (record ? 0 : 3), 2);
        header.writeUInt16BE(1, 4);
        header.writeUInt16BE(answers.length, 6);
        socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
    return socket;
}

let ports: Record<string, number>;
let dns: dgram.Socket;
export let resolver: string;
export let net: Network;

/**
 * The certificates, the HTTPS servers and the DNS server, made before a file's tests and removed
 * after them; the good server's behaviour reset before each test.
 */
export function useServers(): void {
    beforeAll(async () => {
        dir = mkdtempSync(path.join(tmpdir(), "self-check-test-"));
        makeCertificates();
        ports = {
            good: await serve("good"),
            soon: await serve("soon"),
            expiring: await serve("expiring"),
            expired: await serve("expired"),
            other: await serve("other"),
            chainless: await serve("chainless", {}, false),
            legacy: await serve("legacy", { minVersion: "TLSv1", ciphers: "DEFAULT@SECLEVEL=0" }),
        };
        dns = await dnsServer({
            [DOMAIN]: { A: [MACHINE.ipv4], AAAA: [MACHINE.ipv6] },
            [HS]: { A: [MACHINE.ipv4], AAAA: ["2001:0db8:0000::0010"] },
            [EL]: { A: [MACHINE.ipv4], AAAA: [MACHINE.ipv6] },
            "v4only.example.test": { A: [MACHINE.ipv4] },
            "stray.example.test": { A: [MACHINE.ipv4, "198.51.100.7"], AAAA: [MACHINE.ipv6] },
        });
        resolver = `127.0.0.1:${dns.address().port}`;
        net = network();
    });

    afterAll(async () => {
        await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
        dns.close();
        rmSync(dir, { recursive: true, force: true });
    });

    beforeEach(() => {
        behaviour = defaults();
        uploaded = -1;
    });
}

/** Back to what the good server does by default (within a test). */
export function resetBehaviour(): void {
    behaviour = defaults();
}

/** Every name on 443 (and the server name on 8448) goes to the good server; test names to theirs. */
export function connectTo(): Record<string, string> {
    const to = (port: number) => `127.0.0.1:${port}`;
    return {
        [`${DOMAIN}:443`]: to(ports.good!),
        [`${DOMAIN}:8448`]: to(ports.good!),
        [`${HS}:443`]: to(ports.good!),
        [`${EL}:443`]: to(ports.good!),
        ...Object.fromEntries(
            ["soon", "expiring", "expired", "other", "chainless", "legacy"].map((n) => [
                `${n}.example.test:443`,
                to(ports[n]!),
            ]),
        ),
        // A name whose certificate names another.
        "wrong.example.test:443": to(ports.other!),
        // Nothing listens on port 1.
        "closed.example.test:443": "127.0.0.1:1",
    };
}

export function network(overrides: { ca?: string; systemCa?: boolean } = {}): Network {
    return makeNetwork({
        ca: pems.root,
        systemCa: false,
        resolver,
        timeoutMs: 5000,
        connectTo: connectTo(),
        ...overrides,
    });
}

// ---- the stub host ----

/** Stub commands for a host: systemctl (units listed in $DOWN fail), pg_lsclusters, curl, optionally df and find. */
export function stubHost(stubs: string, o: { data: string; fakeDisks: boolean }): void {
    mkdirSync(stubs, { recursive: true });
    const stub = (name: string, body: string) => {
        writeFileSync(path.join(stubs, name), `#!/bin/bash\n${body}\n`);
        chmodSync(path.join(stubs, name), 0o755);
    };
    stub(
        "systemctl",
        '[ "$1" = is-active ] || exit 1\ncase " $DOWN " in *" $2 "*) echo failed; exit 3;; esac\necho active',
    );
    stub("pg_lsclusters", `echo "15 main 5432 online postgres ${o.data} /var/log/postgresql/x.log"`);
    stub("curl", 'printf \'{"server":{"name":"Synapse","version":"%s"}}\' "${SYNAPSE_VERSION:-1.163.2}"');
    if (o.fakeDisks) {
        stub("df", 'echo "Use%  Avail"; echo " ${DISK_USED:-42}% 1073741824"');
        stub("find", "date -u -d '-1 hour' +%Y%m%dT%H%M%SZ");
    }
}

/** An Exec that runs the command here, with `env` (the stubs first on PATH), as sshd would. */
export function localExec(env: Record<string, string>, facts?: () => string): Exec & { commands: string[] } {
    const commands: string[] = [];
    const exec = (_c: unknown, command: string) => {
        commands.push(command);
        // The preflight's script reads /proc and the init of a real server: the stub host answers
        // it with the facts of one (lib/preflight.ts judges them as it judges a host's).
        if (facts && command.includes("fact pid1")) return Promise.resolve({ code: 0, stdout: facts(), stderr: "" });
        return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
            const child = spawn("bash", ["-c", command], { env: { ...process.env, ...env } });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("close", (code) => resolve({ code: code ?? 255, stdout, stderr }));
        });
    };
    return Object.assign(exec, { commands });
}
