// The config schema on its own (pure): defaults, coercion of `config set --path` strings, and
// the checks across keys.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { describe, it } from "@jest/globals";
import {
    ConfigError,
    firewallPorts,
    firewallUdpPorts,
    LETSENCRYPT_PRODUCTION,
    LETSENCRYPT_STAGING,
    parseStackConfig,
    publicHostnames,
} from "../../config";
import { baseConfig, TEST_HOST_KEY } from "../harness/run";

const parse = (overrides: Record<string, unknown> = {}, cloudflareToken = true) =>
    parseStackConfig(baseConfig(overrides), { cloudflareToken });

function problems(overrides: Record<string, unknown>, cloudflareToken = true): string[] {
    try {
        parse(overrides, cloudflareToken);
    } catch (e) {
        assert.ok(e instanceof ConfigError);
        return e.problems;
    }
    assert.fail("expected a ConfigError");
}

describe("stack config", () => {
    it("fills in every default", () => {
        const c = parse({ "matrix:machine": { ipv4: "203.0.113.10" }, "matrix:dns": undefined });
        assert.equal(c.homeserverHost, "matrix.example.org");
        assert.equal(c.elementHost, "element.example.org");
        assert.deepEqual(c.machine, { ipv4: "203.0.113.10", sshPort: 22, sshUser: "root" });
        assert.equal(c.delegation, "apex");
        assert.equal(c.acme.directoryUrl, LETSENCRYPT_PRODUCTION);
        assert.deepEqual(c.synapse, {
            version: "1.163.2",
            enableRegistration: false,
            maxUploadSize: "50M",
            reportStats: false,
            extraConfig: {},
            healthTimeoutSeconds: 300,
            workers: { sync: 0, client: 0, federationSender: 0, media: 0, background: 0 },
            // Remote media goes after 90 days unseen; this server's own is kept.
            mediaRetention: { local: "forever", remote: "90d" },
        });
        assert.deepEqual(c.monitoring, { enabled: false, retention: "15d", scrapeInterval: "30s" });
        assert.equal(c.support, undefined);
        assert.deepEqual(c.postgres, { database: "synapse", user: "synapse" });
        assert.equal(
            c.element.url,
            "https://github.com/element-hq/element-web/releases/download/v1.12.29/element-v1.12.29.tar.gz",
        );
        assert.equal(c.dns, undefined);
        assert.ok(!("sshPrivateKey" in c), "the key stays out of the plain config object");
        assert.ok(!("secrets" in c), "brought secrets stay out of it too");
        assert.deepEqual(c.providedSecrets, {
            registrationSharedSecret: false,
            macaroonSecretKey: false,
            formSecret: false,
            databasePassword: false,
        });
    });

    /** An example stack file's config, as the CLI hands it to the program (objects as JSON). */
    const exampleStack = (name: string) => {
        const file = path.resolve(__dirname, `../../examples/stacks/${name}.yaml`);
        const doc = parseYaml(readFileSync(file, "utf8")) as { config: Record<string, unknown> };
        return Object.fromEntries(
            Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
        );
    };
    /** What a user puts in place of each CHANGE-ME. */
    const OWN_VALUES: Record<string, string> = {
        domain: "example.org",
        ipv4: "203.0.113.10",
        sshHostKey: TEST_HOST_KEY,
        zoneId: "0123456789abcdef0123456789abcdef",
        email: "admin@example.org",
        sha256: "a".repeat(64),
    };
    const filledIn = (raw: Record<string, string>) =>
        Object.fromEntries(
            Object.entries(raw).map(([k, v]) => [
                k,
                k === "matrix:domain" && v === "CHANGE-ME"
                    ? OWN_VALUES.domain!
                    : v.replace(/"(\w+)":"CHANGE-ME"/g, (_, field: string) => `"${field}":"${OWN_VALUES[field]}"`),
            ]),
        );
    const withKey = (raw: Record<string, string>) =>
        parseStackConfig(
            { ...filledIn(raw), "matrix:sshPrivateKey": baseConfig()["matrix:sshPrivateKey"]! },
            { cloudflareToken: true },
        );
    /** The keys whose CHANGE-ME a preview refuses, from its message. */
    const refusedKeys = (raw: Record<string, string>) => {
        try {
            parseStackConfig(
                { ...raw, "matrix:sshPrivateKey": baseConfig()["matrix:sshPrivateKey"]! },
                { cloudflareToken: true },
            );
        } catch (e) {
            return [...String(e).matchAll(/^ {2}- (matrix:[\w.]+):/gm)].map((m) => m[1]).sort();
        }
        return [];
    };

    it("refuses each example stack until every CHANGE-ME is replaced, naming each key", () => {
        assert.deepEqual(refusedKeys(exampleStack("dev")), [
            "matrix:acme.email",
            "matrix:dns.zoneId",
            "matrix:domain",
            "matrix:element.sha256",
            "matrix:machine.ipv4",
        ]);
        assert.deepEqual(refusedKeys(exampleStack("prod")), [
            "matrix:acme.email",
            "matrix:dns.zoneId",
            "matrix:domain",
            "matrix:element.sha256",
            "matrix:machine.ipv4",
            "matrix:machine.sshHostKey",
        ]);
    });

    it("accepts the development example stack once filled in, which is plainly a throwaway", () => {
        const raw = exampleStack("dev");
        assert.throws(
            () => parseStackConfig(filledIn(raw), { cloudflareToken: true }),
            /matrix:sshPrivateKey: required/,
        );
        const c = withKey(raw);
        assert.equal(c.acme.directoryUrl, LETSENCRYPT_STAGING);
        assert.equal(c.purgeOnDestroy, true);
        assert.deepEqual(c.users, [{ name: "alice", admin: true }]);
    });

    it("accepts the production example stack once filled in, whose every other value is safe to keep", () => {
        const c = withKey(exampleStack("prod"));
        assert.equal(c.acme.directoryUrl, LETSENCRYPT_PRODUCTION);
        assert.equal(c.purgeOnDestroy, false);
        assert.equal(c.synapse.enableRegistration, false);
        assert.equal(c.firewall.enabled, true);
        assert.deepEqual(c.users, []);
        assert.equal(c.delegation, "external", "the bare domain's web site is left alone");
        assert.ok(c.machine.sshHostKey, "the server's host key is pinned");
    });

    it("reads numbers and booleans that `pulumi config set --path` stored as strings", () => {
        const c = parse({
            "matrix:machine": { ipv4: "203.0.113.10", sshPort: "2222" },
            "matrix:synapse": { enableRegistration: "true", reportStats: "false" },
            "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef", ttl: "300", manageApex: "false" },
        });
        assert.equal(c.machine.sshPort, 2222);
        assert.equal(c.synapse.enableRegistration, true);
        assert.equal(c.dns?.ttl, 300);
        assert.equal(c.dns?.manageApex, false);
    });

    it("defaults the homeserver to the domain itself with delegation none", () => {
        assert.equal(parse({ "matrix:delegation": "none" }).homeserverHost, "example.org");
    });

    it("names certificate and DNS names by role", () => {
        assert.deepEqual(publicHostnames(parse()), {
            certificates: { homeserver: "matrix.example.org", element: "element.example.org", apex: "example.org" },
            dnsRecords: { homeserver: "matrix.example.org", element: "element.example.org", apex: "example.org" },
        });
        const noApex = publicHostnames(
            parse({ "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef", manageApex: false } }),
        );
        assert.deepEqual(Object.keys(noApex.certificates).sort(), ["apex", "element", "homeserver"]);
        assert.deepEqual(Object.keys(noApex.dnsRecords).sort(), ["element", "homeserver"]);
    });

    const bad: [string, Record<string, unknown>, RegExp][] = [
        ["unknown top-level key", { "matrix:domian": "example.org" }, /^matrix:domian: unknown key/],
        [
            "unknown nested key",
            { "matrix:machine": { ipv4: "203.0.113.10", sshport: 22 } },
            /^matrix:machine\.sshport: unknown key/,
        ],
        [
            "port out of range",
            { "matrix:machine": { ipv4: "203.0.113.10", sshPort: 0 } },
            /^matrix:machine\.sshPort: expected a port number from 1 to 65535/,
        ],
        [
            "wrong type",
            { "matrix:synapse": { enableRegistration: "yes" } },
            /^matrix:synapse\.enableRegistration: expected true or false/,
        ],
        [
            "element host equal to apex",
            { "matrix:elementHost": "example.org" },
            /^matrix:elementHost: must differ from matrix:domain/,
        ],
        [
            "delegation none with another host",
            { "matrix:delegation": "none", "matrix:homeserverHost": "matrix.example.org" },
            /^matrix:homeserverHost: must equal matrix:domain/,
        ],
        [
            "unknown delegation",
            { "matrix:delegation": "wellknown" },
            /^matrix:delegation: expected one of "apex", "external", "none"/,
        ],
        [
            "managed extraConfig key",
            { "matrix:synapse": { extraConfig: { registration_shared_secret: "x" } } },
            /^matrix:synapse\.extraConfig\.registration_shared_secret: is managed by the program/,
        ],
        ["bad zone id", { "matrix:dns": { zoneId: "zone" } }, /^matrix:dns\.zoneId: expected a Cloudflare zone id/],
        [
            "bad ttl",
            { "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef", ttl: 30 } },
            /^matrix:dns\.ttl: expected 1 \(auto\)/,
        ],
        [
            "http ACME directory",
            { "matrix:acme": { email: "a@example.org", directoryUrl: "http://ca.example/dir" } },
            /^matrix:acme\.directoryUrl: expected an https:\/\//,
        ],
        [
            "bad element checksum",
            { "matrix:element": { version: "1.12.29", sha256: "abc" } },
            /^matrix:element\.sha256: expected the SHA-256/,
        ],
        [
            "element version with v",
            { "matrix:element": { version: "v1.12.29", sha256: "a".repeat(64) } },
            /^matrix:element\.version: .*no leading "v"/,
        ],
        [
            "missing SSH key",
            { "matrix:sshPrivateKey": undefined },
            /^matrix:sshPrivateKey: required; set pulumi config set --secret/,
        ],
        [
            "not a private key",
            { "matrix:sshPrivateKey": "ssh-ed25519 AAAA" },
            /^matrix:sshPrivateKey: expected an OpenSSH\/PEM private key/,
        ],
        ["object key given a string", { "matrix:machine": "203.0.113.10" }, /^matrix:machine: expected an object/],
        [
            "bad host key",
            { "matrix:machine": { ipv4: "203.0.113.10", sshHostKey: "AAAA" } },
            /^matrix:machine\.sshHostKey: expected an OpenSSH public key line/,
        ],
        [
            "bad backup schedule",
            { "matrix:backup": { schedule: "daily; rm -rf /" } },
            /^matrix:backup\.schedule: expected a systemd OnCalendar/,
        ],
        ["zero retention", { "matrix:backup": { retention: 0 } }, /^matrix:backup\.retention: expected a whole number/],
        ["duplicate users", { "matrix:users": [{ name: "a" }, { name: "a" }] }, /^matrix:users: names must be unique/],
        ["bad user name", { "matrix:users": [{ name: "Alice" }] }, /^matrix:users\.0\.name: expected a localpart/],
        ["users not a list", { "matrix:users": { name: "a" } }, /^matrix:users: expected a list/],
        [
            "sha256 given as a number",
            { "matrix:element": { version: "1.12.29", sha256: 0 } },
            /^matrix:element\.sha256: expected the SHA-256 of the tarball as a string \(quote it in YAML\)/,
        ],
        [
            "unknown secret",
            { "matrix:secrets": { registrationSecret: "x" } },
            /^matrix:secrets\.registrationSecret: unknown key/,
        ],
        [
            "empty secret",
            { "matrix:secrets": { formSecret: "" } },
            /^matrix:secrets\.formSecret: expected a non-empty string; remove the key to have it generated$/,
        ],
        [
            "federation range not a range",
            { "matrix:federation": { allowedIpRanges: ["10.0.0.0"] } },
            /^matrix:federation\.allowedIpRanges\.0: expected an address range such as 10\.0\.0\.0\/8/,
        ],
        [
            "federation server with a port",
            { "matrix:federation": { allowedServers: ["other.example.net:8448"] } },
            /^matrix:federation\.allowedServers\.0: expected a lower-case DNS name/,
        ],
        [
            "federation CA not PEM",
            { "matrix:federation": { caBundle: "MIIB..." } },
            /^matrix:federation\.caBundle: expected PEM text/,
        ],
        [
            "extraConfig setting the federation whitelist",
            { "matrix:synapse": { extraConfig: { federation_domain_whitelist: [] } } },
            /^matrix:synapse\.extraConfig\.federation_domain_whitelist: is managed by the program; set matrix:federation\.allowedServers/,
        ],
        [
            "bad postgres name",
            { "matrix:postgres": { database: "syn-apse" } },
            /^matrix:postgres\.database: expected a PostgreSQL identifier/,
        ],
        ["auth without its release", { "matrix:auth": {} }, /^matrix:auth\.mas: required/],
        [
            "auth release with a leading v",
            { "matrix:auth": { mas: { version: "v1.22.0", sha256: "a".repeat(64) } } },
            /^matrix:auth\.mas\.version: expected a Matrix Authentication Service release such as "1\.22\.0" \(no leading "v"\)/,
        ],
        [
            "auth with a database host",
            {
                "matrix:auth": { mas: { version: "1.22.0", sha256: "a".repeat(64) } },
                "matrix:database": { machine: { ipv4: "203.0.113.20" } },
            },
            /^matrix:auth: MAS keeps its database beside Synapse's, which matrix:database moves to another host/,
        ],
        [
            "SSH on MAS's loopback port",
            {
                "matrix:auth": { mas: { version: "1.22.0", sha256: "a".repeat(64) } },
                "matrix:machine": { ipv4: "203.0.113.10", sshPort: 8090 },
            },
            /^MAS \(127\.0\.0\.1:8090\): TCP port 8090 is taken by matrix:machine\.sshPort/,
        ],
    ];
    for (const [label, overrides, message] of bad) {
        it(`rejects ${label}, naming the key`, () => {
            const found = problems(overrides);
            assert.ok(
                found.some((p) => message.test(p)),
                found.join("\n"),
            );
        });
    }

    it("reads matrix:auth: off when absent, its download filled in, and kept (with allowDisable) when off", () => {
        assert.equal(parse().auth, undefined);
        const on = parse({ "matrix:auth": { mas: { version: "1.22.0", sha256: "a".repeat(64) } } }).auth;
        assert.deepEqual(on, {
            enabled: true,
            mas: {
                version: "1.22.0",
                sha256: "a".repeat(64),
                url: "https://github.com/element-hq/matrix-authentication-service/releases/download/v1.22.0/mas-cli-x86_64-linux.tar.gz",
            },
            registrationTokenRequired: false,
            allowDisable: false,
        });
        const off = parse({
            "matrix:auth": {
                enabled: "false",
                allowDisable: "true",
                mas: { version: "1.22.0", sha256: "a".repeat(64) },
            },
        }).auth;
        assert.deepEqual([off?.enabled, off?.allowDisable], [false, true]);
    });

    it("needs a Cloudflare token only when DNS is managed", () => {
        assert.ok(problems({}, false).some((p) => p.startsWith("matrix:dns: needs a Cloudflare API token")));
        assert.doesNotThrow(() => parse({ "matrix:dns": undefined }, false));
    });
});

describe("matrix:synapse.workers", () => {
    const workers = (w: unknown) => parse({ "matrix:synapse": { workers: w } }).synapse.workers;
    it("takes a preset by name", () => {
        assert.deepEqual(workers("small"), { sync: 2, client: 1, federationSender: 1, media: 1, background: 1 });
        assert.deepEqual(workers("none"), { sync: 0, client: 0, federationSender: 0, media: 0, background: 0 });
    });
    it("takes counts per kind, the rest 0 (numbers from config set --path arrive as strings)", () => {
        assert.deepEqual(workers({ sync: "3", media: 1 }), {
            sync: 3,
            client: 0,
            federationSender: 0,
            media: 1,
            background: 0,
        });
    });
});

describe("matrix:rtc and matrix:turn (calls)", () => {
    const SHA = "a".repeat(64);
    const rtc = { livekit: { version: "1.13.5", sha256: SHA }, jwtService: { version: "0.5.0", sha256: SHA } };
    it("are off unless set, and off again with enabled false (the settings kept in the stack)", () => {
        const off = parse();
        assert.equal(off.rtc, undefined);
        assert.equal(off.turn, undefined);
        assert.deepEqual(firewallUdpPorts(off), []);
        const disabled = parse({ "matrix:rtc": { ...rtc, enabled: "false" }, "matrix:turn": { enabled: false } });
        assert.equal(disabled.rtc, undefined);
        assert.equal(disabled.turn, undefined);
    });
    it("fill in the ports, the release URLs and the lifetime", () => {
        const c = parse({ "matrix:rtc": rtc, "matrix:turn": {} });
        assert.equal(
            c.rtc!.livekit.url,
            "https://github.com/livekit/livekit/releases/download/v1.13.5/livekit_1.13.5_linux_amd64.tar.gz",
        );
        assert.equal(
            c.rtc!.jwtService.url,
            "https://github.com/element-hq/lk-jwt-service/releases/download/v0.5.0/lk-jwt-service_linux_amd64",
        );
        assert.equal(c.rtc!.udpPort, 7882);
        assert.equal(c.rtc!.tcpPort, 7881);
        assert.equal(c.rtc!.turnUdpPort, undefined);
        assert.deepEqual(c.rtc!.fullAccessHomeservers, []);
        assert.deepEqual(c.turn, {
            enabled: true,
            port: 3478,
            tlsPort: 5349,
            relayPorts: { min: 49152, max: 49251 },
            userLifetime: "1h",
        });
    });
    it("open the calls' ports in the firewall: TCP for ICE and TURN, UDP for ICE, TURN and the relays", () => {
        const c = parse({ "matrix:rtc": { ...rtc, turnUdpPort: 3479 }, "matrix:turn": {} });
        assert.deepEqual(firewallPorts(c), [22, 80, 443, 3478, 5349, 7881]);
        assert.deepEqual(firewallUdpPorts(c), [7882, 3479, 3478, [49152, 49251]]);
    });
    it("refuse two services on one port, naming both keys", () => {
        assert.deepEqual(
            problems({
                "matrix:machine": { ipv4: "203.0.113.10", sshPort: 2222 },
                "matrix:rtc": { ...rtc, tcpPort: 2222 },
            }),
            ["matrix:rtc.tcpPort: TCP port 2222 is taken by matrix:machine.sshPort; choose another port"],
        );
        assert.deepEqual(problems({ "matrix:rtc": rtc, "matrix:turn": { relayPorts: { min: 7800, max: 7900 } } }), [
            "matrix:turn.relayPorts: UDP port 7800-7900 is taken by matrix:rtc.udpPort; choose another port",
        ]);
        // Off: its ports are free.
        assert.doesNotThrow(() =>
            parse({
                "matrix:machine": { ipv4: "203.0.113.10", sshPort: 2222 },
                "matrix:rtc": { ...rtc, enabled: false, tcpPort: 2222 },
                "matrix:turn": { enabled: false, port: 2222 },
            }),
        );
    });
    it("refuse a release without its checksum, privileged ports and an empty relay range", () => {
        const found = problems({
            "matrix:rtc": {
                livekit: { version: "v1.13.5", sha256: SHA },
                jwtService: { version: "0.5.0" },
                udpPort: 443,
            },
            "matrix:turn": { relayPorts: { min: 50000, max: 49999 } },
        });
        assert.deepEqual(found.sort(), [
            "matrix:rtc.jwtService.sha256: required; set it with pulumi config set --path matrix:rtc.jwtService.sha256 <value>",
            'matrix:rtc.livekit.version: expected a livekit-server release such as "1.13.5" (no leading "v")',
            "matrix:rtc.udpPort: expected a UDP port from 1024 to 65535",
            "matrix:turn.relayPorts: relayPorts.min must not exceed relayPorts.max",
        ]);
    });
    it("keep Synapse's call keys to themselves", () => {
        const found = problems({ "matrix:synapse": { extraConfig: { matrix_rtc: {}, turn_shared_secret: "x" } } });
        assert.deepEqual(found, [
            "matrix:synapse.extraConfig.matrix_rtc: is managed by the program; set matrix:rtc",
            "matrix:synapse.extraConfig.turn_shared_secret: is managed by the program; set matrix:turn (the program generates the secret)",
        ]);
    });
});
