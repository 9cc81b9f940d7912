// Bad input: each stack config below is rejected by the whole program (index.ts under Pulumi's
// mocks) before any resource is registered, in one message that names the key and the expected
// form (or the fix). The programs run side by side; one test per case.
import assert from "node:assert/strict";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { baseConfig, runProgramAsync, type ProgramResult } from "../harness/run";
import { recordFigure } from "./figures";

interface Case {
    label: string;
    overrides: Record<string, unknown>;
    /** The key the message must name. */
    key: string;
    /** The expected form or the fix the message must give. */
    form: RegExp;
    plainKeys?: string[];
}

const machine = { ipv4: "203.0.113.10" };
const element = { version: "1.12.29", sha256: "a".repeat(64) };
const rtc = {
    livekit: { version: "1.13.5", sha256: "a".repeat(64) },
    jwtService: { version: "0.5.0", sha256: "b".repeat(64) },
};

export const CASES: Case[] = [
    // Names
    {
        label: "domain with capitals and '_'",
        overrides: { "matrix:domain": "Example_Org" },
        key: "matrix:domain",
        form: /expected a lower-case DNS name with at least two labels/,
    },
    {
        label: "domain of one label",
        overrides: { "matrix:domain": "localhost" },
        key: "matrix:domain",
        form: /at least two labels, such as example\.org/,
    },
    {
        label: "domain with a trailing dot",
        overrides: { "matrix:domain": "example.org." },
        key: "matrix:domain",
        form: /expected a lower-case DNS name/,
    },
    {
        label: "domain label over 63 characters",
        overrides: { "matrix:domain": `${"a".repeat(64)}.org` },
        key: "matrix:domain",
        form: /expected a lower-case DNS name/,
    },
    {
        label: "homeserverHost starting with '-'",
        overrides: { "matrix:homeserverHost": "-matrix.example.org" },
        key: "matrix:homeserverHost",
        form: /such as matrix\.example\.org/,
    },
    {
        label: "elementHost with a space",
        overrides: { "matrix:elementHost": "element .example.org" },
        key: "matrix:elementHost",
        form: /such as element\.example\.org/,
    },
    {
        label: "elementHost equal to homeserverHost",
        overrides: { "matrix:elementHost": "matrix.example.org" },
        key: "matrix:elementHost",
        form: /must differ from matrix:homeserverHost .*its own host name/,
    },
    {
        label: "elementHost equal to the apex",
        overrides: { "matrix:elementHost": "example.org" },
        key: "matrix:elementHost",
        form: /must differ from matrix:domain/,
    },
    {
        label: "delegation none with another homeserverHost",
        overrides: { "matrix:delegation": "none", "matrix:homeserverHost": "matrix.example.org" },
        key: "matrix:homeserverHost",
        form: /must equal matrix:domain .* when matrix:delegation is "none"/,
    },
    {
        label: "unknown delegation",
        overrides: { "matrix:delegation": "apex-only" },
        key: "matrix:delegation",
        form: /expected one of "apex", "external", "none"/,
    },
    // Machine
    {
        label: "IPv4 octet over 255",
        overrides: { "matrix:machine": { ipv4: "203.0.113.300" } },
        key: "matrix:machine.ipv4",
        form: /expected an IPv4 address such as 203\.0\.113\.10/,
    },
    {
        label: "IPv4 with a prefix length",
        overrides: { "matrix:machine": { ipv4: "203.0.113.10/24" } },
        key: "matrix:machine.ipv4",
        form: /expected an IPv4 address/,
    },
    {
        label: "machine without ipv4",
        overrides: { "matrix:machine": {} },
        key: "matrix:machine.ipv4",
        form: /required; set it with pulumi config set --path matrix:machine\.ipv4/,
    },
    {
        label: "IPv6 with ':::'",
        overrides: { "matrix:machine": { ...machine, ipv6: "2001:db8:::1" } },
        key: "matrix:machine.ipv6",
        form: /expected an IPv6 address such as 2001:db8::10/,
    },
    {
        label: "IPv4 given as IPv6",
        overrides: { "matrix:machine": { ...machine, ipv6: "203.0.113.11" } },
        key: "matrix:machine.ipv6",
        form: /expected an IPv6 address/,
    },
    {
        label: "SSH port 0",
        overrides: { "matrix:machine": { ...machine, sshPort: 0 } },
        key: "matrix:machine.sshPort",
        form: /expected a port number from 1 to 65535/,
    },
    {
        label: "SSH port 70000",
        overrides: { "matrix:machine": { ...machine, sshPort: 70000 } },
        key: "matrix:machine.sshPort",
        form: /from 1 to 65535/,
    },
    {
        label: "SSH port as a word",
        overrides: { "matrix:machine": { ...machine, sshPort: "ssh" } },
        key: "matrix:machine.sshPort",
        form: /expected a port number/,
    },
    {
        label: "SSH user with a space",
        overrides: { "matrix:machine": { ...machine, sshUser: "Root User" } },
        key: "matrix:machine.sshUser",
        form: /expected a Unix user name such as root/,
    },
    {
        label: "host key without its type",
        overrides: { "matrix:machine": { ...machine, sshHostKey: "AAAAC3NzaC1lZDI1NTE5AAAAI" } },
        key: "matrix:machine.sshHostKey",
        form: /expected an OpenSSH public key line/,
    },
    {
        label: "machine not an object",
        overrides: { "matrix:machine": "203.0.113.10" },
        key: "matrix:machine",
        form: /expected an object \(set it in the stack file or with pulumi config set --path\)/,
    },
    {
        label: "private key that is not a key",
        overrides: { "matrix:sshPrivateKey": "ssh-ed25519 AAAA public" },
        key: "matrix:sshPrivateKey",
        form: /expected an OpenSSH\/PEM private key \(set it with: pulumi config set --secret/,
    },
    {
        label: "private key stored in plain text",
        overrides: {},
        plainKeys: ["matrix:sshPrivateKey"],
        key: "matrix:sshPrivateKey",
        form: /stored in plain text; set it again with pulumi config set --secret matrix:sshPrivateKey/,
    },
    // DNS
    {
        label: "dns block without a Cloudflare token",
        overrides: { "cloudflare:apiToken": undefined },
        key: "matrix:dns",
        form: /needs a Cloudflare API token; set it with: pulumi config set --secret cloudflare:apiToken/,
    },
    {
        label: "zone id in capitals",
        overrides: { "matrix:dns": { zoneId: "0123456789ABCDEF0123456789ABCDEF" } },
        key: "matrix:dns.zoneId",
        form: /32 lower-case hex digits/,
    },
    {
        label: "TTL of 30 s",
        overrides: { "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef", ttl: 30 } },
        key: "matrix:dns.ttl",
        form: /1 \(auto\) or a number of seconds from 60 to 86400/,
    },
    // ACME
    {
        label: "no acme block",
        overrides: { "matrix:acme": undefined },
        key: "matrix:acme",
        form: /required; set pulumi config set --path matrix:acme\.email/,
    },
    { label: "missing ACME e-mail", overrides: { "matrix:acme": {} }, key: "matrix:acme.email", form: /required/ },
    {
        label: "ACME e-mail without a domain",
        overrides: { "matrix:acme": { email: "admin" } },
        key: "matrix:acme.email",
        form: /expected an e-mail address for the ACME account/,
    },
    {
        label: "ACME directory over http",
        overrides: { "matrix:acme": { email: "a@example.org", directoryUrl: "http://acme.example.org/dir" } },
        key: "matrix:acme.directoryUrl",
        form: /expected an https:\/\/ ACME directory URL/,
    },
    {
        label: "CA bundle that is not PEM",
        overrides: { "matrix:acme": { email: "a@example.org", caBundle: "not a cert" } },
        key: "matrix:acme.caBundle",
        form: /-----BEGIN CERTIFICATE-----/,
    },
    // Synapse
    {
        label: "upload size with a space",
        overrides: { "matrix:synapse": { maxUploadSize: "50 MB" } },
        key: "matrix:synapse.maxUploadSize",
        form: /expected a size such as "50M"/,
    },
    {
        label: "upload size in G",
        overrides: { "matrix:synapse": { maxUploadSize: "1G" } },
        key: "matrix:synapse.maxUploadSize",
        form: /no G, no spaces/,
    },
    {
        label: "the database host is the Synapse host",
        overrides: { "matrix:database": { machine } },
        key: "matrix:database.machine.ipv4",
        form: /leave matrix:database out to keep PostgreSQL on the Synapse host/,
    },
    {
        label: "a database host without an address",
        overrides: { "matrix:database": { machine: { sshPort: 22 } } },
        key: "matrix:database.machine.ipv4",
        form: /required/,
    },
    {
        label: "Synapse's address for the database host, not an address",
        overrides: { "matrix:database": { machine: { ipv4: "203.0.113.20" }, synapseAddress: "db.example.org" } },
        key: "matrix:database.synapseAddress",
        form: /expected an IPv4 address/,
    },
    {
        label: "a worker preset that does not exist",
        overrides: { "matrix:synapse": { workers: "large" } },
        key: "matrix:synapse.workers",
        form: /expected "none" or "small", or counts such as \{"sync": 2/,
    },
    {
        label: "background tasks on two workers",
        overrides: { "matrix:synapse": { workers: { sync: 1, background: 2 } } },
        key: "matrix:synapse.workers.background",
        form: /Synapse runs them on exactly one process/,
    },
    {
        label: "a misspelt worker kind",
        overrides: { "matrix:synapse": { workers: { syncers: 2 } } },
        key: "matrix:synapse.workers.syncers",
        form: /unknown key/,
    },
    {
        label: "more /sync workers than the limit",
        overrides: { "matrix:synapse": { workers: { sync: 9 } } },
        key: "matrix:synapse.workers.sync",
        form: /expected a whole number of \/sync workers from 0 to 8/,
    },
    {
        label: "Synapse version 'latest'",
        overrides: { "matrix:synapse": { version: "latest" } },
        key: "matrix:synapse.version",
        form: /expected a matrix-synapse release such as "1\.163\.2"/,
    },
    {
        label: "Synapse version with a 'v'",
        overrides: { "matrix:synapse": { version: "v1.163.2" } },
        key: "matrix:synapse.version",
        form: /no leading "v"/,
    },
    {
        label: "Synapse version as a number",
        overrides: { "matrix:synapse": { version: 1.5 } },
        key: "matrix:synapse.version",
        form: /as a string/,
    },
    {
        label: "registration flag 'yes'",
        overrides: { "matrix:synapse": { enableRegistration: "yes" } },
        key: "matrix:synapse.enableRegistration",
        form: /expected true or false/,
    },
    {
        label: "health timeout of 5 s",
        overrides: { "matrix:synapse": { healthTimeoutSeconds: 5 } },
        key: "matrix:synapse.healthTimeoutSeconds",
        form: /from 10 to 3600/,
    },
    {
        label: "extraConfig overriding server_name",
        overrides: { "matrix:synapse": { extraConfig: { server_name: "x.org" } } },
        key: "matrix:synapse.extraConfig.server_name",
        form: /is managed by the program; set matrix:domain/,
    },
    {
        label: "extraConfig setting media_retention itself",
        overrides: { "matrix:synapse": { extraConfig: { media_retention: { remote_media_lifetime: "1d" } } } },
        key: "matrix:synapse.extraConfig.media_retention",
        form: /set matrix:synapse\.mediaRetention/,
    },
    {
        label: "media lifetime in words",
        overrides: { "matrix:synapse": { mediaRetention: { remote: "90 days" } } },
        key: "matrix:synapse.mediaRetention.remote",
        form: /expected "forever" or a lifetime such as "90d"/,
    },
    {
        label: "media lifetime in hours",
        overrides: { "matrix:synapse": { mediaRetention: { local: "12h" } } },
        key: "matrix:synapse.mediaRetention.local",
        form: /days, weeks or years/,
    },
    // Monitoring
    {
        label: "monitoring retention in months",
        overrides: { "matrix:monitoring": { enabled: true, retention: "2mo" } },
        key: "matrix:monitoring.retention",
        form: /expected a duration such as "15d"/,
    },
    {
        label: "scrape interval of ten minutes",
        overrides: { "matrix:monitoring": { enabled: true, scrapeInterval: "10m" } },
        key: "matrix:monitoring.scrapeInterval",
        form: /from "1s" to "5m"/,
    },
    {
        label: "SMTP server without a port",
        overrides: {
            "matrix:monitoring": {
                enabled: true,
                email: { to: "ops@example.org", from: "am@example.org", smarthost: "smtp.example.org" },
            },
        },
        key: "matrix:monitoring.email.smarthost",
        form: /host:port, such as smtp\.example\.org:587/,
    },
    {
        label: "SMTP login without its password",
        overrides: {
            "matrix:monitoring": {
                enabled: true,
                email: {
                    to: "ops@example.org",
                    from: "am@example.org",
                    smarthost: "smtp.example.org:587",
                    username: "am",
                },
            },
        },
        key: "matrix:secrets.smtpPassword",
        form: /pulumi config set --secret --path matrix:secrets\.smtpPassword/,
    },
    // Support contacts
    {
        label: "support document with nothing in it",
        overrides: { "matrix:support": {} },
        key: "matrix:support",
        form: /needs contacts, a page, or both/,
    },
    {
        label: "support contact with a role only",
        overrides: { "matrix:support": { contacts: [{ role: "admin" }] } },
        key: "matrix:support.contacts.0",
        form: /needs a matrixId or an email/,
    },
    {
        label: "support contact's Matrix ID without its server",
        overrides: { "matrix:support": { contacts: [{ matrixId: "@admin" }] } },
        key: "matrix:support.contacts.0.matrixId",
        form: /expected a Matrix user ID such as @admin:example\.org/,
    },
    // Element
    {
        label: "Element sha256 too short",
        overrides: { "matrix:element": { ...element, sha256: "abc" } },
        key: "matrix:element.sha256",
        form: /64 lower-case hex digits/,
    },
    {
        label: "Element sha256 read as a number",
        overrides: { "matrix:element": { ...element, sha256: 1e64 } },
        key: "matrix:element.sha256",
        form: /as a string \(quote it in YAML\)/,
    },
    {
        label: "Element version with a 'v'",
        overrides: { "matrix:element": { ...element, version: "v1.12.29" } },
        key: "matrix:element.version",
        form: /no leading "v"/,
    },
    {
        label: "no element block",
        overrides: { "matrix:element": undefined },
        key: "matrix:element",
        form: /required; set pulumi config set --path matrix:element\.version/,
    },
    {
        label: "Element URL over ftp",
        overrides: { "matrix:element": { ...element, url: "ftp://mirror.example.org/e.tgz" } },
        key: "matrix:element.url",
        form: /expected an http\(s\):\/\/ URL/,
    },
    // Other keys
    {
        label: "misspelt top-level key",
        overrides: { "matrix:domian": "example.org" },
        key: "matrix:domian",
        form: /unknown key; check the spelling against docs\/configuration\.md/,
    },
    {
        label: "misspelt nested key",
        overrides: { "matrix:synapse": { enableRegistrations: true } },
        key: "matrix:synapse.enableRegistrations",
        form: /unknown key/,
    },
    {
        label: "database name with capitals and '-'",
        overrides: { "matrix:postgres": { database: "Synapse-DB" } },
        key: "matrix:postgres.database",
        form: /expected a PostgreSQL identifier/,
    },
    {
        label: "backup retention 0",
        overrides: { "matrix:backup": { retention: 0 } },
        key: "matrix:backup.retention",
        form: /from 1 to 365/,
    },
    {
        label: "backup schedule with a ';'",
        overrides: { "matrix:backup": { schedule: "daily; rm -rf /" } },
        key: "matrix:backup.schedule",
        form: /systemd OnCalendar expression/,
    },
    {
        label: "two users with one name",
        overrides: { "matrix:users": [{ name: "alice" }, { name: "alice" }] },
        key: "matrix:users",
        form: /names must be unique/,
    },
    {
        label: "user name with '!'",
        overrides: { "matrix:users": [{ name: "Alice!" }] },
        key: "matrix:users.0.name",
        form: /expected a localpart of lower-case letters/,
    },
    {
        label: "firewall port 70000",
        overrides: { "matrix:firewall": { allowTcpPorts: [70000] } },
        key: "matrix:firewall.allowTcpPorts.0",
        form: /expected a TCP port number from 1 to 65535/,
    },
    {
        label: "purgeOnDestroy 'maybe'",
        overrides: { "matrix:purgeOnDestroy": "maybe" },
        key: "matrix:purgeOnDestroy",
        form: /expected true or false/,
    },
    {
        label: "brought secrets in plain text",
        overrides: { "matrix:secrets": { formSecret: "f".repeat(40) } },
        plainKeys: ["matrix:secrets"],
        key: "matrix:secrets",
        form: /pulumi config set --secret --path matrix:secrets\.<name>/,
    },
    // Calls
    {
        label: "rtc without lk-jwt-service's checksum",
        overrides: {
            "matrix:rtc": { livekit: { version: "1.13.5", sha256: "a".repeat(64) }, jwtService: { version: "0.5.0" } },
        },
        key: "matrix:rtc.jwtService.sha256",
        form: /required; set it with pulumi config set --path matrix:rtc.jwtService.sha256/,
    },
    {
        label: "rtc ICE over TCP on SSH's port",
        overrides: {
            "matrix:machine": { ...machine, sshPort: 2222 },
            "matrix:rtc": {
                livekit: { version: "1.13.5", sha256: "a".repeat(64) },
                jwtService: { version: "0.5.0", sha256: "b".repeat(64) },
                tcpPort: 2222,
            },
        },
        key: "matrix:rtc.tcpPort",
        form: /TCP port 2222 is taken by matrix:machine.sshPort; choose another port/,
    },
    {
        label: "turn relay range across the ICE port",
        overrides: {
            "matrix:rtc": {
                livekit: { version: "1.13.5", sha256: "a".repeat(64) },
                jwtService: { version: "0.5.0", sha256: "b".repeat(64) },
            },
            "matrix:turn": { relayPorts: { min: 7000, max: 8000 } },
        },
        key: "matrix:turn.relayPorts",
        form: /UDP port 7000-8000 is taken by matrix:rtc.udpPort/,
    },
    {
        label: "turn relay range upside down",
        overrides: { "matrix:turn": { relayPorts: { min: 50000, max: 49000 } } },
        key: "matrix:turn.relayPorts",
        form: /relayPorts.min must not exceed relayPorts.max/,
    },
    // Values that parse but cannot work (docs/configuration.md: Values that parse but cannot work)
    {
        label: "machine address 0.0.0.0",
        overrides: { "matrix:machine": { ipv4: "0.0.0.0" } },
        key: "matrix:machine.ipv4",
        form: /0\.0\.0\.0 is not a host's address .*set the host's own address/,
    },
    {
        label: "machine address on loopback",
        overrides: { "matrix:machine": { ipv4: "127.0.0.1" } },
        key: "matrix:machine.ipv4",
        form: /127\.0\.0\.1 is loopback/,
    },
    {
        label: "machine address a multicast group",
        overrides: { "matrix:machine": { ipv4: "224.0.0.1" } },
        key: "matrix:machine.ipv4",
        form: /is a multicast group, not a host/,
    },
    {
        label: "machine address the broadcast address",
        overrides: { "matrix:machine": { ipv4: "255.255.255.255" } },
        key: "matrix:machine.ipv4",
        form: /is reserved \(240\.0\.0\.0\/4\) or the broadcast address/,
    },
    {
        label: "IPv6 link-local address",
        overrides: { "matrix:machine": { ipv4: "203.0.113.10", ipv6: "fe80::1" } },
        key: "matrix:machine.ipv6",
        form: /fe80::1 is link-local .*global address/,
    },
    {
        label: "IPv6 loopback",
        overrides: { "matrix:machine": { ipv4: "203.0.113.10", ipv6: "::1" } },
        key: "matrix:machine.ipv6",
        form: /::1 is loopback/,
    },
    {
        label: "database host's Synapse address 0.0.0.0",
        overrides: { "matrix:database": { machine: { ipv4: "203.0.113.20" }, synapseAddress: "0.0.0.0" } },
        key: "matrix:database.synapseAddress",
        form: /0\.0\.0\.0 is not a host's address/,
    },
    {
        label: "ICE/TCP on Synapse's loopback port",
        overrides: { "matrix:rtc": { ...rtc, tcpPort: 8008 } },
        key: "matrix:rtc.tcpPort",
        form: /TCP port 8008 is taken by Synapse \(127\.0\.0\.1:8008\); choose another port/,
    },
    {
        label: "TURN over TLS on Prometheus's port, with monitoring",
        overrides: { "matrix:monitoring": { enabled: true }, "matrix:turn": { tlsPort: 9090 } },
        key: "matrix:turn.tlsPort",
        form: /TCP port 9090 is taken by monitoring prometheus/,
    },
];
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe(`bad stack configs (${CASES.length} cases)`, () => {
    const results = new Map<string, ProgramResult>();
    const rejected = new Set<string>();
    let control: ProgramResult;
    beforeAll(async () => {
        // The config every case changes one thing in: it must deploy as it is.
        control = await runProgramAsync(baseConfig());
        // Eight at a time: each is a Node process running the whole program under mocks.
        const queue = [...CASES];
        await Promise.all(
            Array.from({ length: 8 }, async () => {
                for (let c = queue.shift(); c; c = queue.shift()) {
                    results.set(c.label, await runProgramAsync(baseConfig(c.overrides), { plainKeys: c.plainKeys }));
                }
            }),
        );
    });
    afterAll(() => recordFigure("badConfigs", { rejected: rejected.size, total: CASES.length }));

    it("has at least 30 cases, each with its own label, changing a config that deploys as it is", () => {
        assert.ok(CASES.length >= 30);
        assert.equal(new Set(CASES.map((c) => c.label)).size, CASES.length);
        assert.equal(control.error, undefined, "the base config is accepted");
        assert.ok(control.resources.filter((r) => r.custom).length > 30, "and registers the whole program");
    });

    for (const c of CASES) {
        it(`rejects ${c.label}: names ${c.key} and the expected form, before any resource`, () => {
            const r = results.get(c.label)!;
            const message = r.error ?? "";
            assert.match(message, /nothing was deployed/, `not rejected: ${message}`);
            assert.match(message, new RegExp(`  - ${escape(c.key)}: `), message);
            const line = message.split("\n").find((l) => l.startsWith(`  - ${c.key}: `)) ?? "";
            assert.match(line, c.form);
            assert.deepEqual(
                r.resources.filter((x) => x.type !== "pulumi:pulumi:Stack").map((x) => x.name),
                [],
            );
            rejected.add(c.label);
        });
    }
});
