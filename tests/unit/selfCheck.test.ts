// `npm run self-check` (selfcheck/, scripts/self-check.ts): the pure parts, and the network
// checks against real local servers — HTTPS with certificates made here by openssl (valid,
// expiring, expired, wrong name, chain left out, TLS 1.1 allowed), a key server whose response is
// signed here with an ed25519 key, a small DNS server — and the host probe run by bash with stub
// commands in place of systemctl, pg_lsclusters and curl.
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
import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from "@jest/globals";
import { parseStackConfig } from "../../config";
import {
    backupTime,
    canonicalJson,
    checkClientApi,
    checkDns,
    checkElement,
    checkFederation,
    checkHost,
    checkLegacyTls,
    checkStackOutputs,
    checkTls,
    checkWellKnown,
    discoverFederation,
    elementSecurityHeaders,
    evaluateHostReport,
    expectedUnits,
    formatResult,
    hostProbe,
    makeNetwork,
    parseHostReport,
    parseStackOutputs,
    schedulePeriodSeconds,
    uploadSizeBytes,
    verifyServerKeys,
    type CheckResult,
    type Exec,
    type HostProbe,
    type Network,
    type SelfCheckReport,
} from "../../selfcheck";
import { parseSelfCheckArgs, selfCheckFromStack, type StackReader } from "../../scripts/self-check";
import { baseConfig } from "../harness/run";
import { HOST_FACTS } from "../harness/program";

const DOMAIN = "example.test";
const HS = "matrix.example.test";
const EL = "element.example.test";
const MACHINE = { ipv4: "203.0.113.10", ipv6: "2001:db8::10" };
const DAY = 86_400_000;

const config = (overrides: Record<string, unknown> = {}) =>
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

const byId = (results: CheckResult[], id: string): CheckResult => {
    const r = results.find((x) => x.id === id);
    assert.ok(r, `no result ${id} in ${results.map((x) => x.id).join(", ")}`);
    return r;
};

// ---- fixtures: certificates, key, servers ----

let dir: string;
const pems: Record<string, string> = {};

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
const publicKeyBase64 = Buffer.from(signingKey.publicKey.export({ format: "jwk" }).x!, "base64url")
    .toString("base64")
    .replace(/=+$/, "");
const KEY_ID = "ed25519:a_test";

/**
 * A /_matrix/key/v2/server response: `fields` in canonical form are written out by hand here (not
 * with the code under test), signed, then sent pretty-printed in another key order.
 */
function keyResponse(
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

const ELEMENT_HEADERS: Record<string, string> = {
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
let behaviour = defaults();
/** Bytes the last upload delivered (-1: refused before reading). */
let uploaded = -1;

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
let resolver: string;
let net: Network;

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

/** Every name on 443 (and the server name on 8448) goes to the good server; test names to theirs. */
function connectTo(): Record<string, string> {
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

function network(overrides: { ca?: string; systemCa?: boolean } = {}): Network {
    return makeNetwork({
        ca: pems.root,
        systemCa: false,
        resolver,
        timeoutMs: 5000,
        connectTo: connectTo(),
        ...overrides,
    });
}

// ---- pure parts ----

describe("self-check: pure parts", () => {
    it("reads upload sizes as Synapse and nginx do (K and M binary)", () => {
        assert.equal(uploadSizeBytes("50M"), 50 * 1024 * 1024);
        assert.equal(uploadSizeBytes("512K"), 512 * 1024);
        assert.equal(uploadSizeBytes("1000"), 1000);
        assert.throws(() => uploadSizeBytes("1G"), /not an upload size/);
    });

    it("reads the period of the common OnCalendar forms, daily otherwise", () => {
        assert.equal(schedulePeriodSeconds("daily"), 86_400);
        assert.equal(schedulePeriodSeconds("hourly"), 3_600);
        assert.equal(schedulePeriodSeconds("weekly"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* 03:30"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* 00,12:00:00"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* *:15:00"), 3_600);
        assert.equal(schedulePeriodSeconds("Sun *-*-* 04:00"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("Mon..Fri *-*-* 04:00"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-01 02:00"), 31 * 86_400);
        assert.equal(schedulePeriodSeconds("something odd"), 86_400);
        assert.equal(schedulePeriodSeconds("nightly 03:00"), 86_400, "not a weekday: daily, not weekly");
        assert.equal(schedulePeriodSeconds("Sat,Sun 05:00"), 86_400);
        assert.equal(schedulePeriodSeconds("Fri 05:00"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("*-12-24 18:00"), 366 * 86_400);
    });

    it("reads backup folder names as UTC times", () => {
        assert.equal(backupTime("20261125T120000Z"), Date.UTC(2026, 10, 25, 12, 0, 0));
        assert.equal(backupTime("20261125T120000Z.part"), undefined);
    });

    it("writes Matrix canonical JSON (the spec's examples)", () => {
        assert.equal(canonicalJson({}), "{}");
        assert.equal(canonicalJson({ one: 1, two: "Two" }), '{"one":1,"two":"Two"}', "no whitespace, keys in order");
        assert.equal(canonicalJson({ b: "2", a: "1" }), '{"a":"1","b":"2"}');
        assert.equal(
            canonicalJson({ auth: { success: true, mxid: "@john.doe:example.com", profile: { three_pids: [] } } }),
            '{"auth":{"mxid":"@john.doe:example.com","profile":{"three_pids":[]},"success":true}}',
        );
        assert.equal(canonicalJson({ a: "日本語" }), '{"a":"日本語"}', "UTF-8, not \\u escapes");
        assert.equal(canonicalJson({ 本: 2, 日: 1 }), '{"日":1,"本":2}', "sorted by code point");
        assert.equal(canonicalJson({ a: "\u0000" }), '{"a":"\\u0000"}');
        assert.equal(canonicalJson({ a: null }), '{"a":null}');
        // U+FB01 sorts before U+1F600 by code point, after it by UTF-16 unit.
        assert.equal(canonicalJson({ "\u{1F600}": 1, "\uFB01": 2 }), '{"\uFB01":2,"\u{1F600}":1}');
        assert.throws(() => canonicalJson({ a: 1.5 }), /fractions/);
    });

    it("verifies a key response signed elsewhere, and refuses one tampered after signing", () => {
        const now = Date.now();
        const good = verifyServerKeys(keyResponse({ serverName: DOMAIN, validUntil: now + DAY }), DOMAIN, now);
        assert.deepEqual(good.problems, []);
        assert.deepEqual(good.signedBy, [KEY_ID]);
        const tampered = keyResponse({ serverName: DOMAIN, validUntil: now + DAY }, (d) => {
            d.valid_until_ts = now + 2 * DAY;
        });
        assert.deepEqual(verifyServerKeys(tampered, DOMAIN, now).problems, [
            `the signature by ${KEY_ID} does not verify`,
        ]);
        const otherName = verifyServerKeys(
            keyResponse({ serverName: "other.test", validUntil: now + DAY }),
            DOMAIN,
            now,
        );
        assert.ok(
            otherName.problems.some((p) => p.startsWith('server_name is "other.test"')),
            otherName.problems.join(),
        );
        const stale = verifyServerKeys(keyResponse({ serverName: DOMAIN, validUntil: now - 1000 }), DOMAIN, now);
        assert.deepEqual(stale.signedBy, [KEY_ID]);
        assert.ok(
            stale.problems.some((p) => /valid_until_ts .* is past/.test(p)),
            stale.problems.join(),
        );
        const unsigned = keyResponse({ serverName: DOMAIN, validUntil: now + DAY }, (d) => {
            d.signatures = {};
        });
        assert.ok(verifyServerKeys(unsigned, DOMAIN, now).problems.some((p) => p.startsWith("not signed")));
    });

    it("expects the security headers the Element vhost renders", () => {
        const headers = elementSecurityHeaders();
        for (const name of [
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Content-Security-Policy",
            "Strict-Transport-Security",
        ]) {
            assert.equal(headers[name], ELEMENT_HEADERS[name], name);
        }
        assert.ok(!("Cache-Control" in headers), "Cache-Control has its own check");
    });

    it("lists the units each host runs", () => {
        assert.deepEqual(expectedUnits(config()), [
            { unit: "matrix-synapse", host: "homeserver" },
            { unit: "nginx", host: "homeserver" },
            { unit: "postgresql", host: "homeserver" },
            { unit: "matrix-synapse-backup.timer", host: "homeserver" },
            { unit: "matrix-pulumi-firewall", host: "homeserver" },
        ]);
        const scaled = expectedUnits(
            config({
                "matrix:synapse": { workers: "small" },
                "matrix:database": { machine: { ipv4: "203.0.113.20" } },
            }),
        );
        const on = (host: string) => scaled.filter((u) => u.host === host).map((u) => u.unit);
        assert.deepEqual(on("homeserver"), [
            "matrix-synapse",
            "matrix-synapse-redis",
            "matrix-synapse-worker@sync1",
            "matrix-synapse-worker@sync2",
            "matrix-synapse-worker@client1",
            "matrix-synapse-worker@federation_sender1",
            "matrix-synapse-worker@media1",
            "matrix-synapse-worker@background1",
            "matrix-synapse.target",
            "nginx",
            "matrix-synapse-backup.timer",
            "matrix-pulumi-firewall",
        ]);
        assert.deepEqual(on("database"), ["postgresql", "matrix-pulumi-firewall"]);
        const open = expectedUnits(config({ "matrix:firewall": { enabled: false } })).map((u) => u.unit);
        assert.ok(!open.includes("matrix-pulumi-firewall"));
        const monitored = (extra: Record<string, unknown>) =>
            expectedUnits(config({ "matrix:monitoring": { enabled: true }, ...extra }))
                .map((u) => u.unit)
                .filter((u) => u.startsWith("prometheus") || u.startsWith("matrix-pulumi-metrics"));
        assert.deepEqual(monitored({}), [
            "prometheus",
            "prometheus-alertmanager",
            "prometheus-node-exporter",
            "prometheus-postgres-exporter",
            "matrix-pulumi-metrics.timer",
        ]);
        // With the database elsewhere, its exporter does not run.
        assert.ok(
            !monitored({ "matrix:database": { machine: { ipv4: "203.0.113.20" } } }).includes(
                "prometheus-postgres-exporter",
            ),
        );
    });

    it("probes each host for what runs there", () => {
        const cfg = config({ "matrix:database": { machine: { ipv4: "203.0.113.20" } } });
        const hs = hostProbe(cfg, "homeserver", 10);
        assert.equal(hs.postgres, false);
        assert.deepEqual(hs.disks, ["/var/lib/matrix-synapse"]);
        assert.equal(hs.backups?.dir, "/var/backups/matrix-synapse");
        assert.equal(hs.synapseVersion?.expected, cfg.synapse.version);
        const db = hostProbe(cfg, "database", 10);
        assert.equal(db.postgres, true);
        assert.equal(db.backups, undefined);
        assert.deepEqual(db.units, ["postgresql", "matrix-pulumi-firewall"]);
        assert.equal(hostProbe(config(), "homeserver", 10).postgres, true);
    });

    describe("a host's report", () => {
        const probe: HostProbe = {
            units: ["matrix-synapse", "nginx"],
            disks: ["/var/lib/matrix-synapse"],
            postgres: true,
            backups: { dir: "/var/backups/matrix-synapse", schedule: "daily" },
            synapseVersion: { url: "http://127.0.0.1:8008/_matrix/federation/v1/version", expected: "1.163.2" },
            timeoutSeconds: 10,
        };
        const now = Date.UTC(2026, 10, 25, 12, 0, 0) / 1000;
        const version = (v: string) =>
            Buffer.from(JSON.stringify({ server: { name: "Synapse", version: v } })).toString("base64");
        const report = (changes: Record<string, string> = {}) =>
            parseHostReport(
                Object.entries({
                    now: String(now),
                    "unit:matrix-synapse": "active",
                    "unit:nginx": "active",
                    "disk:/var/lib/matrix-synapse": "50% 1073741824",
                    "postgres.cluster": "15 main 5432 online postgres /var/lib/postgresql/15/main /var/log/pg.log",
                    "disk:/var/lib/postgresql/15/main": "20% 2147483648",
                    "backups.folder": "present",
                    "backups.newest": "20261125T030000Z",
                    "synapse.version": version("1.163.2"),
                    ...changes,
                })
                    .map(([k, v]) => `${k}=${v}`)
                    .join("\n"),
            );
        const status = (r: Map<string, string>, id: string) => byId(evaluateHostReport(probe, r), id).status;

        it("passes a healthy host", () => {
            const results = evaluateHostReport(probe, report());
            assert.deepEqual(
                results.filter((r) => r.status !== "pass"),
                [],
            );
            assert.deepEqual(
                results.map((r) => r.id),
                [
                    "unit matrix-synapse",
                    "unit nginx",
                    "postgresql cluster",
                    "disk /var/lib/matrix-synapse",
                    "disk /var/lib/postgresql/15/main",
                    "backup",
                    "synapse version",
                ],
            );
            assert.match(byId(results, "disk /var/lib/matrix-synapse").detail, /^50 % free \(1\.0 GiB\)$/);
        });

        it("fails a unit that is not active, and says how to look", () => {
            const r = byId(evaluateHostReport(probe, report({ "unit:nginx": "failed" })), "unit nginx");
            assert.equal(r.status, "fail");
            assert.equal(r.detail, "failed");
            assert.match(r.fix ?? "", /systemctl status nginx/);
            assert.equal(status(report({ "unit:nginx": "" }), "unit nginx"), "fail");
        });

        it("warns under 15 % free disk and fails under 10 %", () => {
            const disk = (used: string) =>
                status(report({ "disk:/var/lib/matrix-synapse": `${used} 1000` }), "disk /var/lib/matrix-synapse");
            assert.equal(disk("85%"), "pass");
            assert.equal(disk("86%"), "warn");
            assert.equal(disk("90%"), "warn", "10 % free is not under 10 %");
            assert.equal(disk("91%"), "fail");
            assert.equal(
                status(report({ "disk:/var/lib/postgresql/15/main": "95% 10" }), "disk /var/lib/postgresql/15/main"),
                "fail",
            );
            assert.equal(
                status(report({ "disk:/var/lib/matrix-synapse": "" }), "disk /var/lib/matrix-synapse"),
                "fail",
            );
        });

        it("warns when there is no backup yet and fails when the newest is older than two periods", () => {
            assert.equal(status(report({ "backups.newest": "" }), "backup"), "warn");
            assert.equal(status(report({ "backups.newest": "20261123T130000Z" }), "backup"), "pass");
            assert.equal(status(report({ "backups.newest": "20261123T110000Z" }), "backup"), "fail");
            const weekly = { ...probe, backups: { dir: "/b", schedule: "weekly" } };
            assert.equal(
                byId(evaluateHostReport(weekly, report({ "backups.newest": "20261120T000000Z" })), "backup").status,
                "pass",
            );
        });

        it("fails a Synapse other than the pinned version, or none answering", () => {
            const r = byId(
                evaluateHostReport(probe, report({ "synapse.version": version("1.150.0") })),
                "synapse version",
            );
            assert.equal(r.status, "fail");
            assert.equal(r.detail, "1.150.0 runs, matrix:synapse.version is 1.163.2");
            assert.match(r.fix ?? "", /pulumi up/);
            assert.equal(status(report({ "synapse.version": "" }), "synapse version"), "fail");
        });

        it("fails a PostgreSQL cluster that is down", () => {
            const down = report({
                "postgres.cluster": "15 main 5432 down postgres /var/lib/postgresql/15/main /x.log",
            });
            assert.equal(status(down, "postgresql cluster"), "fail");
            assert.equal(status(report({ "postgres.cluster": "" }), "postgresql cluster"), "fail");
        });
    });

    it("fails outputs that differ from the config (changed since the last deployment)", () => {
        const cfg = config();
        const deployed = { serverName: DOMAIN, homeserverUrl: `https://${HS}`, elementUrl: `https://${EL}/` };
        assert.equal(checkStackOutputs(cfg, { ...deployed, delegation: "apex" }).status, "pass");
        const moved = checkStackOutputs(cfg, {
            ...deployed,
            elementUrl: "https://chat.example.test",
            delegation: "none",
        });
        assert.equal(moved.status, "fail");
        assert.equal(
            moved.detail,
            `deployed elementUrl https://chat.example.test (config: https://${EL}), delegation none (config: apex)`,
        );
        assert.match(moved.fix ?? "", /pulumi up/);
    });

    it("formats a line per result, the fix only where something is wrong", () => {
        assert.equal(formatResult({ id: "tls a.test", status: "pass", detail: "ok", fix: "x" }), "PASS tls a.test: ok");
        assert.equal(
            formatResult({ id: "tls a.test", status: "fail", detail: "expired", fix: "renew" }),
            "FAIL tls a.test: expired — fix: renew",
        );
    });

    it("refuses outputs of a stack never deployed, and bad arguments", () => {
        assert.throws(() => parseStackOutputs({}), /run pulumi up first/);
        assert.throws(() => parseSelfCheckArgs(["--timeout", "0"]), /--timeout/);
        assert.throws(() => parseSelfCheckArgs(["--resolver", "dns.example"]), /--resolver/);
        assert.throws(() => parseSelfCheckArgs(["--no-system-ca"]), /needs --ca/);
        assert.throws(() => parseSelfCheckArgs(["--bogus"]), /usage: npm run self-check/);
        assert.throws(() => parseSelfCheckArgs(["--ca", "x.pem"], () => "not a pem"), /no PEM certificate/);
        const a = parseSelfCheckArgs(
            ["--stack", "prod", "--json", "--resolver", "127.0.0.1:5353", "--timeout", "3", "--ca", "ca.pem"],
            () => pems.root!,
        );
        assert.deepEqual(a, {
            stack: "prod",
            json: true,
            options: { timeoutMs: 3000, ca: pems.root, systemCa: true, resolver: "127.0.0.1:5353" },
        });
    });
});

// ---- against local servers ----

describe("self-check: DNS (a local DNS server)", () => {
    it("passes names that resolve to the machine, IPv6 compared as addresses", async () => {
        const r = await checkDns(net, HS, { ...MACHINE, ipv6: "2001:DB8:0:0::0010" }, "fix");
        assert.equal(r.status, "pass", r.detail);
        assert.equal(r.detail, `A ${MACHINE.ipv4}, AAAA 2001:db8::10`);
    });
    it("fails a missing AAAA when the machine has IPv6, a stray AAAA when it has none", async () => {
        const missing = await checkDns(net, "v4only.example.test", MACHINE, "create it");
        assert.equal(missing.status, "fail");
        assert.match(missing.detail, /no AAAA record/);
        assert.equal(missing.fix, "create it");
        const stray = await checkDns(net, DOMAIN, { ipv4: MACHINE.ipv4 }, "fix");
        assert.equal(stray.status, "fail");
        assert.match(stray.detail, /but matrix:machine has no ipv6/);
        assert.equal((await checkDns(net, "v4only.example.test", { ipv4: MACHINE.ipv4 }, "fix")).status, "pass");
    });
    it("fails a wrong or extra A record, and a name that does not exist", async () => {
        assert.match(
            (await checkDns(net, HS, { ...MACHINE, ipv4: "203.0.113.99" }, "f")).detail,
            /A 203.0.113.10, not 203.0.113.99/,
        );
        const extra = await checkDns(net, "stray.example.test", MACHINE, "f");
        assert.equal(extra.status, "fail");
        assert.match(extra.detail, /198\.51\.100\.7/);
        assert.match((await checkDns(net, "nowhere.example.test", MACHINE, "f")).detail, /no A record/);
    });
});

describe("self-check: TLS (local servers with openssl's certificates)", () => {
    it("passes a valid certificate with its chain, naming the days left and the protocol", async () => {
        const r = await checkTls(net, HS, Date.now());
        assert.equal(r.status, "pass", r.detail);
        assert.match(
            r.detail,
            /^valid (89|90) days \(until \d{4}-\d\d-\d\d\), TLSv1\.3, issuer Self-check Test Intermediate$/,
        );
    });
    it("warns under 21 days left and fails under 7", async () => {
        const soon = await checkTls(net, "soon.example.test", Date.now());
        assert.equal(soon.status, "warn", soon.detail);
        assert.match(soon.detail, /^valid 1[45] days/);
        const expiring = await checkTls(net, "expiring.example.test", Date.now());
        assert.equal(expiring.status, "fail", expiring.detail);
        assert.match(expiring.detail, /^valid [23] days/);
        assert.match(expiring.fix ?? "", /certbot renew/);
    });
    it("fails an expired certificate, naming the reason", async () => {
        const r = await checkTls(net, "expired.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.equal(r.detail, "the certificate expired on 2020-02-01 (CERT_HAS_EXPIRED)");
        assert.match(r.fix ?? "", /certbot renew/);
    });
    it("fails a certificate for another name", async () => {
        const r = await checkTls(net, "wrong.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /ERR_TLS_CERT_ALTNAME_INVALID/);
    });
    it("fails a server that does not send its intermediate", async () => {
        const r = await checkTls(net, "chainless.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
        assert.match(r.fix ?? "", /fullchain\.pem/);
    });
    it("fails a certificate from a CA not trusted (the system store alone)", async () => {
        const r = await checkTls(network({ ca: undefined, systemCa: true }), HS, Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.fix ?? "", /--ca/);
    });
    it("fails a host nothing answers on, with nginx as the fix", async () => {
        const r = await checkTls(net, "closed.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /^no TLS handshake: .*ECONNREFUSED/);
        assert.match(r.fix ?? "", /nothing listens on closed\.example\.test:443/);
        assert.equal((await checkTls(net, HS, Date.now(), 8448)).id, `tls ${HS}:8448`);
    });
    it("passes a server that refuses TLS 1.0–1.1, fails one that accepts them", async () => {
        const refused = await checkLegacyTls(net, HS);
        assert.equal(refused.status, "pass", refused.detail);
        const accepted = await checkLegacyTls(net, "legacy.example.test");
        assert.equal(accepted.status, "fail");
        assert.match(accepted.detail, /^accepts TLSv1(\.1)?$/);
        assert.match(accepted.fix ?? "", /ssl_protocols TLSv1\.2 TLSv1\.3/);
    });
});

describe("self-check: well-known (a local server)", () => {
    const check = (delegation: "apex" | "external" | "none" = "apex") =>
        checkWellKnown(net, {
            serverName: DOMAIN,
            homeserverHost: delegation === "none" ? DOMAIN : HS,
            homeserverUrl: `https://${HS}`,
            delegation,
        });
    it("passes both documents served as the program serves them", async () => {
        const [server, client] = await check();
        assert.equal(server!.status, "pass", server!.detail);
        assert.equal(server!.detail, `https://${DOMAIN}/.well-known/matrix/server: {"m.server":"${HS}:443"}`);
        assert.equal(client!.status, "pass", client!.detail);
    });
    it("fails two Content-Type headers, even equal ones", async () => {
        behaviour.contentTypes = ["application/json", "application/json"];
        const [server] = await check();
        assert.equal(server!.status, "fail");
        assert.match(server!.detail, /2 Content-Type headers/);
    });
    it("fails another Content-Type", async () => {
        behaviour.contentTypes = ["text/plain"];
        assert.match((await check())[1]!.detail, /Content-Type text\/plain, not application\/json/);
    });
    it("fails a missing Access-Control-Allow-Origin", async () => {
        behaviour.cors = [];
        const [server, client] = await check();
        assert.equal(server!.status, "fail");
        assert.match(client!.detail, /no Access-Control-Allow-Origin/);
    });
    it("fails an m.server elsewhere and a base_url other than homeserverUrl", async () => {
        behaviour.mServer = HS;
        behaviour.baseUrl = "https://old.example.test";
        const [server, client] = await check();
        assert.match(server!.detail, /m\.server is "matrix\.example\.test", not "matrix\.example\.test:443"/);
        assert.equal(client!.status, "fail");
        assert.match(client!.detail, /base_url is "https:\/\/old\.example\.test"/);
        assert.match(client!.fix ?? "", /pulumi up/);
    });
    it("with delegation external, reports problems as warnings with the stack output to publish", async () => {
        behaviour.wellKnownStatus = 404;
        const [server, client] = await check("external");
        assert.equal(server!.status, "warn");
        assert.match(server!.detail, /HTTP 404/);
        assert.match(server!.fix ?? "", /wellKnown\.server/);
        assert.equal(client!.status, "warn");
    });
});

describe("self-check: federation (a local key server)", () => {
    it("finds the server through the well-known and verifies its signed keys", async () => {
        const endpoint = await discoverFederation(net, DOMAIN);
        assert.deepEqual(endpoint, { url: `https://${HS}:443`, how: `well-known m.server ${HS}:443` });
        const [keys, version] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(keys!.status, "pass", keys!.detail);
        assert.match(keys!.detail, new RegExp(`signed by ${KEY_ID}, valid 7 days more$`));
        assert.equal(version!.status, "pass");
        assert.equal(version!.detail, "Synapse 1.163.2");
    });
    it("falls back to the server name on 8448 without a well-known (delegation none)", async () => {
        behaviour.wellKnownStatus = 404;
        const endpoint = await discoverFederation(net, DOMAIN);
        assert.equal(endpoint.url, `https://${DOMAIN}:8448`);
        const [keys] = await checkFederation(net, DOMAIN, Date.now(), "none");
        assert.equal(keys!.status, "pass", keys!.detail);
    });
    it("fails a response tampered with after signing", async () => {
        behaviour.keys = keyResponse({ serverName: DOMAIN, validUntil: Date.now() + DAY }, (d) => {
            (d.verify_keys as Record<string, unknown>)["ed25519:b_extra"] = { key: publicKeyBase64 };
        });
        const [keys] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(keys!.status, "fail");
        assert.match(keys!.detail, /the signature by ed25519:a_test does not verify/);
        assert.match(keys!.fix ?? "", /restart Synapse/);
    });
    it("fails keys of another server name, and keys no longer valid", async () => {
        behaviour.keys = keyResponse({ serverName: "other.test", validUntil: Date.now() + DAY });
        const [other] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(other!.status, "fail");
        assert.match(other!.fix ?? "", /another server/);
        behaviour.keys = keyResponse({ serverName: DOMAIN, validUntil: Date.now() - DAY });
        const [stale] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(stale!.status, "fail");
        assert.match(stale!.detail, /is past/);
    });
});

describe("self-check: client API (a local server)", () => {
    const check = (enableRegistration = false, maxUploadSize = "64K") =>
        checkClientApi(net, { homeserverUrl: `https://${HS}`, enableRegistration, maxUploadSize });
    it("passes versions, closed registration, and an upload of exactly maxUploadSize reaching Synapse", async () => {
        const results = await check();
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["client versions", "pass"],
                ["client registration", "pass"],
                ["client upload", "pass"],
            ],
        );
        assert.equal(uploaded, 64 * 1024, "the body is exactly maxUploadSize bytes");
        assert.equal(
            byId(results, "client upload").detail,
            "65536 bytes (maxUploadSize 64K) reach Synapse (401 M_MISSING_TOKEN)",
        );
    });
    it("fails registration open when the stack closes it, and closed when it opens it", async () => {
        behaviour.registrationOpen = true;
        const open = byId(await check(false), "client registration");
        assert.equal(open.status, "fail");
        assert.equal(open.detail, "open, but matrix:synapse.enableRegistration says closed");
        assert.equal(byId(await check(true), "client registration").status, "pass");
        behaviour.registrationOpen = false;
        assert.equal(byId(await check(true), "client registration").status, "fail");
    });
    it("fails an upload nginx refuses (413), before the body is sent", async () => {
        behaviour.uploadLimit = 64 * 1024 - 1;
        const r = byId(await check(), "client upload");
        assert.equal(r.status, "fail");
        assert.equal(r.detail, "65536 bytes (maxUploadSize 64K): 413 from nginx");
        assert.match(r.fix ?? "", /client_max_body_size/);
    });
    it("reports nginx's 413 even when nginx closes the connection while the body is still being sent", async () => {
        behaviour.uploadLimit = 1024;
        const r = byId(await check(false, "64M"), "client upload");
        assert.equal(r.detail, "67108864 bytes (maxUploadSize 64M): 413 from nginx");
    });
});

describe("self-check: Element (a local server)", () => {
    const check = () => checkElement(net, { elementUrl: `https://${EL}`, homeserverUrl: `https://${HS}` });
    it("passes config.json, the security headers and no-cache", async () => {
        const results = await check();
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["element config", "pass"],
                ["element headers", "pass"],
                ["element cache", "pass"],
            ],
        );
    });
    it("fails config.json pointing elsewhere", async () => {
        behaviour.elementBaseUrl = "https://matrix.org";
        const r = byId(await check(), "element config");
        assert.equal(r.status, "fail");
        assert.match(r.detail, /base_url is "https:\/\/matrix\.org"/);
    });
    it("fails a missing security header, warns a different value", async () => {
        delete behaviour.elementHeaders["Content-Security-Policy"];
        const missing = byId(await check(), "element headers");
        assert.equal(missing.status, "fail");
        assert.equal(missing.detail, "missing Content-Security-Policy on /, Content-Security-Policy on /config.json");
        behaviour = defaults();
        behaviour.elementHeaders["X-Frame-Options"] = "DENY";
        assert.equal(byId(await check(), "element headers").status, "warn");
    });
    it("fails index.html without no-cache, passes no-store", async () => {
        behaviour.cacheControl = "max-age=3600";
        assert.equal(byId(await check(), "element cache").status, "fail");
        behaviour.cacheControl = undefined;
        assert.match(byId(await check(), "element cache").detail, /Cache-Control absent/);
        behaviour.cacheControl = "no-store";
        assert.equal(byId(await check(), "element cache").status, "pass");
    });
});

// ---- the host probe, run by bash ----

/** Stub commands for a host: systemctl (units listed in $DOWN fail), pg_lsclusters, curl, optionally df and find. */
function stubHost(stubs: string, o: { data: string; fakeDisks: boolean }): void {
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
function localExec(env: Record<string, string>, facts?: () => string): Exec & { commands: string[] } {
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

describe("self-check: the host probe (bash with stub commands)", () => {
    it("reads units, disks, PostgreSQL, the newest backup and Synapse's version", async () => {
        const root = path.join(dir, "host");
        const backups = path.join(root, "backups");
        const data = path.join(root, "pgdata");
        mkdirSync(data, { recursive: true });
        const newest = new Date(Date.now() - 3_600_000)
            .toISOString()
            .replace(/[-:]/g, "")
            .replace(/\.\d+Z$/, "Z");
        for (const name of ["20200101T000000Z", newest, "pre-upgrade.dump"])
            mkdirSync(path.join(backups, name), { recursive: true });
        mkdirSync(path.join(backups, "20990101T000000Z.part"));
        stubHost(path.join(root, "bin"), { data, fakeDisks: false });
        const probe: HostProbe = {
            ...hostProbe(config({ "matrix:synapse": { workers: { sync: 1 } } }), "homeserver", 5),
            disks: [root],
            backups: { dir: backups, schedule: "daily" },
        };
        const exec = localExec({ PATH: `${path.join(root, "bin")}:${process.env.PATH}`, DOWN: "matrix-synapse-redis" });
        const results = await checkHost({ host: "203.0.113.10", user: "root" }, probe, { exec, timeoutMs: 5000 });
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["ssh root@203.0.113.10:22", "pass"],
                ["unit matrix-synapse", "pass"],
                ["unit matrix-synapse-redis", "fail"],
                ["unit matrix-synapse-worker@sync1", "pass"],
                ["unit matrix-synapse.target", "pass"],
                ["unit nginx", "pass"],
                ["unit postgresql", "pass"],
                ["unit matrix-synapse-backup.timer", "pass"],
                ["unit matrix-pulumi-firewall", "pass"],
                ["postgresql cluster", "pass"],
                [`disk ${root}`, byId(results, `disk ${root}`).status],
                [`disk ${data}`, byId(results, `disk ${data}`).status],
                ["backup", "pass"],
                ["synapse version", "pass"],
            ],
        );
        assert.match(byId(results, `disk ${root}`).detail, /^\d+ % free \(/);
        assert.equal(byId(results, "backup").detail.startsWith(`newest ${newest}, 60 min old`), true);
        assert.equal(byId(results, "unit matrix-synapse-redis").detail, "failed");
        assert.equal(exec.commands.length, 1, "one SSH exec per host");
        assert.match(exec.commands[0]!, /^bash -c /);
    });

    it("runs the probe through sudo -n for another user, and reports a refusal", async () => {
        const stderrOnly: Exec = () =>
            Promise.resolve({ code: 1, stdout: "", stderr: "sudo: a password is required\n" });
        const r = await checkHost({ host: "h", user: "deploy" }, hostProbe(config(), "homeserver", 5), {
            exec: async (c, command) => {
                assert.match(command, /^sudo -n bash -c /);
                return stderrOnly(c, command);
            },
            timeoutMs: 5000,
        });
        assert.deepEqual(
            r.map((x) => [x.id, x.status]),
            [["ssh deploy@h:22", "fail"]],
        );
        assert.match(r[0]!.fix ?? "", /password-less sudo/);
    });

    it("fails a host SSH does not reach in time", async () => {
        const r = await checkHost({ host: "h" }, hostProbe(config(), "homeserver", 1), {
            exec: () => new Promise(() => undefined),
            // The deadline is the timeout plus sshExec's 15 s to connect: 100 ms here.
            timeoutMs: -14_900,
        });
        assert.equal(r[0]!.status, "fail");
        assert.match(r[0]!.detail, /no answer within/);
    });
});

// ---- the command ----

describe("self-check: npm run self-check (the whole command, local servers and a stub host)", () => {
    const outputs = {
        serverName: DOMAIN,
        homeserverUrl: `https://${HS}`,
        elementUrl: `https://${EL}`,
        delegation: "apex",
    };
    const reader =
        (raw: Record<string, string>, out: unknown = outputs) =>
        (stack?: string): StackReader => {
            assert.equal(stack, "prod");
            return { config: () => raw, outputs: () => out };
        };
    const raw = () =>
        baseConfig({
            "matrix:domain": DOMAIN,
            "matrix:machine": MACHINE,
            "matrix:dns": undefined,
            "matrix:synapse": { maxUploadSize: "64K" },
            "matrix:database": { machine: { ipv4: "203.0.113.20" } },
        });
    let caFile: string;
    let exec: ReturnType<typeof localExec>;
    beforeAll(() => {
        caFile = path.join(dir, "trust.pem");
        writeFileSync(caFile, pems.root!);
        const stubs = path.join(dir, "cli-host");
        stubHost(stubs, { data: "/var/lib/postgresql/15/main", fakeDisks: true });
        exec = localExec({ PATH: `${stubs}:${process.env.PATH}` }, () => facts);
    });
    /** What the preflight reads on the stub host: a Debian 12 server, nginx on 80 and 443. */
    let facts = HOST_FACTS;
    afterEach(() => {
        facts = HOST_FACTS;
    });
    const argv = (...more: string[]) => [
        ...["--stack", "prod", "--resolver", resolver, "--ca", caFile, "--no-system-ca", "--timeout", "5"],
        ...more,
    ];
    const run = async (argvs: string[], r = reader(raw())) => {
        const lines: string[] = [];
        const result = await selfCheckFromStack(argvs, r, { connectTo: connectTo(), exec }, (l) => lines.push(l));
        return { ...result, lines };
    };

    it("prints one line per check in a fixed order, the summary last, and exits 0", async () => {
        const { exitCode, lines, results } = await run(argv());
        assert.deepEqual(results.filter((r) => r.status !== "pass").map(formatResult), []);
        assert.equal(exitCode, 0);
        assert.deepEqual(
            lines.map((l) => l.split(":")[0]),
            [
                "PASS stack",
                `PASS dns ${HS}`,
                `PASS dns ${EL}`,
                `PASS dns ${DOMAIN}`,
                `PASS tls ${HS}`,
                `PASS tls-legacy ${HS}`,
                `PASS tls ${EL}`,
                `PASS tls-legacy ${EL}`,
                `PASS tls ${DOMAIN}`,
                `PASS tls-legacy ${DOMAIN}`,
                "PASS well-known server",
                "PASS well-known client",
                "PASS federation keys",
                "PASS federation version",
                "PASS client versions",
                "PASS client registration",
                "PASS client upload",
                "PASS element config",
                "PASS element headers",
                "PASS element cache",
                "PASS ssh root@203.0.113.10",
                "PASS unit matrix-synapse",
                "PASS unit nginx",
                "PASS unit matrix-synapse-backup.timer",
                "PASS unit matrix-pulumi-firewall",
                "PASS disk /var/lib/matrix-synapse",
                "PASS backup",
                "PASS synapse version",
                "PASS preflight",
                "PASS ssh root@203.0.113.20",
                "PASS unit postgresql (database host)",
                "PASS unit matrix-pulumi-firewall (database host)",
                "PASS postgresql cluster (database host)",
                "PASS disk /var/lib/postgresql/15/main (database host)",
                "PASS preflight (database host)",
                `${results.length} passed, 0 warnings, 0 failed`,
            ],
        );
    });

    it("exits 1 when a check fails, the failing line naming the fix", async () => {
        behaviour.registrationOpen = true;
        const { exitCode, lines } = await run(argv());
        assert.equal(exitCode, 1);
        const line = lines.find((l) => l.startsWith("FAIL client registration"));
        assert.equal(
            line,
            "FAIL client registration: open, but matrix:synapse.enableRegistration says closed — fix: run pulumi up (homeserver.yaml enable_registration); check matrix:synapse.extraConfig",
        );
        assert.match(lines[lines.length - 1]!, /^\d+ passed, 0 warnings, 1 failed$/);
    });

    it("runs the deploy's preflight on each host: what would stop the next pulumi up fails, with its fix", async () => {
        facts = `${HOST_FACTS}listen\t80 apache2\nfirewall\tufw\n`;
        const { exitCode, lines } = await run(argv());
        assert.equal(exitCode, 1);
        assert.deepEqual(
            lines.filter((l) => l.startsWith("FAIL preflight")),
            [
                "FAIL preflight: matrix:machine: ufw is active, and matrix:firewall.enabled has the program manage the firewall (nftables) too — fix: `ufw disable`, or set matrix:firewall.enabled to false and open 80 and 443 (and SSH) in ufw",
                "FAIL preflight: matrix:machine: port 80 is held by apache2, not nginx; the program serves ACME and Matrix there — fix: stop and disable apache2 (or move it to another port)",
                "FAIL preflight (database host): matrix:database.machine: ufw is active, and matrix:firewall.enabled has the program manage the firewall (nftables) too — fix: `ufw disable`, or set matrix:firewall.enabled to false and open 80 and 443 (and SSH) in ufw",
            ],
        );
    });

    it("prints one JSON document with --json", async () => {
        const { lines, results } = await run(argv("--json"));
        assert.equal(lines.length, 1);
        const doc = JSON.parse(lines[0]!) as SelfCheckReport;
        assert.deepEqual(doc.results, results);
        assert.deepEqual(doc.summary, { passed: results.length, warnings: 0, failed: 0 });
    });

    it("exits 2 for a stack never deployed, or bad arguments", async () => {
        const never = await run(argv(), reader(raw(), {}));
        assert.equal(never.exitCode, 2);
        assert.match(never.lines[0]!, /run pulumi up first/);
        const bad = await run(["--stack", "prod", "--timeout", "soon"]);
        assert.equal(bad.exitCode, 2);
        assert.match(bad.lines[0]!, /--timeout/);
    });
});
