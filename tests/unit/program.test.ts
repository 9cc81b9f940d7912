// The program under Pulumi's mocks: what it creates, in which order, and what it keeps secret.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, it } from "@jest/globals";
import { connectionFromConfig } from "../../lib/managedFile";
import { unwrapSecrets as unwrap } from "../harness/stack";
import {
    allStrings,
    baseConfig,
    byName,
    dependsOn,
    isSecretValue,
    names,
    plainStrings,
    runProgramSoon,
    TEST_SSH_KEY,
    type ProgramResult,
} from "../harness/run";

const COMMAND = "command:remote:Command";
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const PASSWORD = "random:index/randomPassword:RandomPassword";
const FILE = "pulumi-nodejs:dynamic/matrix:ManagedFile";

/** The serialized ManagedFile provider, as far as these tests call it. */
interface ProviderUnderTest {
    diff(id: string, olds: unknown, news: unknown): Promise<{ changes: boolean }>;
    configure(req: { config: { get(key: string): string | undefined; require(key: string): string } }): Promise<void>;
    currentConnection(props: unknown): { host: string; port: number; user: string; privateKey: string };
}

/** The value a RandomPassword produced in this run (whatever the mock made it), by resource name. */
const generated = (r: ProgramResult, name: string) => allStrings(byName(r, name).outputs.result)[0]!;
/** Every value the run's RandomPasswords produced. */
const generatedSecrets = (r: ProgramResult) =>
    r.resources.filter((x) => x.type === PASSWORD).map((x) => allStrings(x.outputs.result)[0]!);

describe("the full stack (Cloudflare DNS, apex delegation, IPv6)", () => {
    // Every run this block compares, scheduled at once (they run side by side).
    const runs = {
        full: runProgramSoon(baseConfig()),
        again: runProgramSoon(baseConfig()),
        timed: runProgramSoon(baseConfig(), { delayMs: 150 }),
        preview: runProgramSoon(baseConfig(), { preview: true }),
        purging: runProgramSoon(baseConfig({ "matrix:purgeOnDestroy": "true" })),
        viaTsNode: runProgramSoon(baseConfig(), { loader: "ts-node" }),
    };
    let result: ProgramResult;
    beforeAll(async () => {
        result = await runs.full;
        assert.equal(result.error, undefined);
    });

    it("creates the homeserver, the components it creates (and the backup timer) with their type tokens", () => {
        const components = result.resources.filter((r) => !r.custom && r.type.startsWith("matrix:"));
        assert.deepEqual(components.map((r) => `${r.type} ${r.name}`).sort(), [
            "matrix:index:DnsRecords dns",
            "matrix:index:ElementWeb element",
            "matrix:index:HostFirewall firewall",
            "matrix:index:HostPackages packages",
            "matrix:index:MatrixHomeserver matrix",
            "matrix:index:NginxProxy nginx",
            "matrix:index:PostgresDatabase postgres",
            "matrix:index:SynapseBackups backup",
            "matrix:index:SynapseServer synapse",
        ]);
        // The stack's components under the one homeserver, keeping the names they had at the root.
        const homeserver = byName(result, "matrix");
        for (const c of components.filter((r) => r !== homeserver)) assert.equal(c.parent, homeserver.urn, c.name);
    });

    it("parents every child to its component, named after it", () => {
        for (const r of result.resources.filter((r) => r.custom)) {
            const parent = result.resources.find((p) => p.urn === r.parent);
            assert.ok(parent, `${r.name} has a parent`);
            assert.ok(r.name.startsWith(`${parent.name}-`), `${r.name} is named after ${parent.name}`);
        }
    });

    it("creates A and AAAA records, DNS-only, for the homeserver, Element and the apex", () => {
        assert.deepEqual(names(result, RECORD).sort(), [
            "dns-apex-a",
            "dns-apex-aaaa",
            "dns-element-a",
            "dns-element-aaaa",
            "dns-homeserver-a",
            "dns-homeserver-aaaa",
        ]);
        const aaaa = byName(result, "dns-element-aaaa").inputs;
        assert.equal(aaaa.name, "element.example.org");
        assert.equal(aaaa.type, "AAAA");
        assert.equal(aaaa.content, "2001:db8::10");
        assert.equal(aaaa.proxied, false);
        assert.equal(aaaa.ttl, 1);
        assert.equal(byName(result, "dns-apex-a").inputs.name, "example.org");
    });

    it("has the remote steps of each component", () => {
        assert.deepEqual(names(result, COMMAND).sort(), [
            "backup-timer",
            "element-data",
            "element-release",
            "element-site",
            "firewall-apply",
            "firewall-install",
            "nginx-acme-account",
            "nginx-certificate-apex",
            "nginx-certificate-element",
            "nginx-certificate-homeserver",
            "nginx-install",
            "nginx-sites",
            "packages-install",
            "postgres-data",
            "postgres-database",
            "postgres-install",
            "synapse-data",
            "synapse-install",
            "synapse-service",
        ]);
        assert.deepEqual(names(result, PASSWORD).sort(), [
            "postgres-password",
            "synapse-form-secret",
            "synapse-macaroon-secret-key",
            "synapse-registration-shared-secret",
        ]);
    });

    it("makes every file a service reads a ManagedFile (drift), with its path, mode and owner", () => {
        const files = result.resources.filter((r) => r.type === FILE);
        assert.deepEqual(
            files
                .map((r) => [r.name, plainStrings(r.inputs.path)[0], r.inputs.mode, r.inputs.owner, r.inputs.group])
                .sort(),
            [
                [
                    "element-config-json",
                    "/var/www/element/releases/v1.12.29-aaaaaaaaaaaa/config.json",
                    "0644",
                    "root",
                    "root",
                ],
                ["element-vhost", "/etc/nginx/sites-available/matrix-element.conf", "0644", "root", "root"],
                ["firewall-rules", "/etc/matrix-pulumi/firewall.nft", "0644", "root", "root"],
                ["nginx-apex-vhost", "/etc/nginx/sites-available/matrix-apex.conf", "0644", "root", "root"],
                ["nginx-homeserver-vhost", "/etc/nginx/sites-available/matrix-homeserver.conf", "0644", "root", "root"],
                ["nginx-synapse-upstreams", "/etc/nginx/conf.d/matrix-synapse-upstreams.conf", "0644", "root", "root"],
                ["synapse-homeserver-yaml", "/etc/matrix-synapse/homeserver.yaml", "0640", "root", "matrix-synapse"],
                ["synapse-log-yaml", "/etc/matrix-synapse/log.yaml", "0640", "root", "matrix-synapse"],
                ["synapse-secrets-yaml", "/etc/matrix-synapse/secrets.yaml", "0640", "root", "matrix-synapse"],
                ["synapse-unit", "/etc/systemd/system/matrix-synapse.service", "0644", "root", "root"],
            ],
        );
        for (const f of files) {
            assert.equal(typeof f.inputs.__provider, "string", `${f.name} carries its serialized provider`);
            assert.equal(
                plainStrings(f.inputs.sha256)[0],
                createHash("sha256").update(allStrings(f.inputs.content)[0]!).digest("hex"),
                `${f.name}: sha256 is the content's`,
            );
        }
    });

    it("restarts Synapse on its files' revisions and reloads nginx on the vhosts' only", () => {
        for (const f of ["synapse-homeserver-yaml", "synapse-log-yaml", "synapse-secrets-yaml", "synapse-unit"]) {
            assert.ok(
                byName(result, "synapse-service").dependencies.some((d) => d.endsWith(`::${f}`)),
                f,
            );
        }
        assert.ok(byName(result, "nginx-sites").dependencies.some((d) => d.endsWith("::nginx-homeserver-vhost")));
        assert.ok(byName(result, "element-site").dependencies.some((d) => d.endsWith("::element-vhost")));
        // config.json is read by browsers: it orders the switch but is not part of its revision.
        assert.doesNotMatch(String(byName(result, "element-site").inputs.create), /config\.json/);
        assert.ok(!byName(result, "nginx-sites").dependencies.some((d) => d.includes("::synapse-")));
    });

    it("requests each certificate only after its DNS records exist", () => {
        for (const role of ["apex", "element", "homeserver"]) {
            for (const type of ["a", "aaaa"]) {
                assert.ok(dependsOn(result, `nginx-certificate-${role}`, `dns-${role}-${type}`), `${role} ${type}`);
            }
        }
        const direct = byName(result, "nginx-certificate-element").dependencies.filter((d) => d.includes("DnsRecord"));
        assert.deepEqual(
            direct.map((d) => d.split("::").pop()),
            ["dns-element-a", "dns-element-aaaa"],
        );
    });

    it("chains database → Synapse → proxy → Element", () => {
        assert.ok(dependsOn(result, "postgres-database", "postgres-install"));
        assert.ok(dependsOn(result, "synapse-secrets-yaml", "postgres-database"));
        assert.ok(dependsOn(result, "synapse-secrets-yaml", "synapse-install"));
        assert.ok(dependsOn(result, "synapse-service", "postgres-database"));
        assert.ok(dependsOn(result, "synapse-service", "synapse-homeserver-yaml"));
        assert.ok(dependsOn(result, "synapse-service", "synapse-secrets-yaml"));
        assert.ok(dependsOn(result, "nginx-homeserver-vhost", "nginx-certificate-homeserver"));
        assert.ok(dependsOn(result, "nginx-sites", "synapse-service"));
        assert.ok(dependsOn(result, "nginx-sites", "nginx-certificate-homeserver"));
        assert.ok(dependsOn(result, "element-site", "nginx-sites"));
        assert.ok(dependsOn(result, "element-site", "nginx-certificate-element"));
        assert.ok(dependsOn(result, "element-site", "element-release"));
    });

    it("starts the installs and Element's download at once, and each later step only after what it needs", async () => {
        // Each resource takes 150 ms under this mock, so the order of starts and ends is the order
        // the engine would run them in (absolute times also include the program's own work).
        const timed = await runs.timed;
        assert.equal(timed.error, undefined);
        const t = timed.timeline;
        // First the host's packages, in one apt run; then everything else that needs nothing more
        // starts at once, before any of it ends.
        const steps = Object.keys(t).filter((n) => byName(timed, n).type === COMMAND);
        assert.deepEqual(
            steps.filter((n) => t[n]!.start < t["packages-install"]!.end),
            ["packages-install"],
            "every step waits for the packages",
        );
        const roots = ["postgres-install", "nginx-install", "firewall-install", "synapse-data", "element-data"];
        const firstEnd = Math.min(...roots.map((r) => t[r]!.end));
        for (const root of roots) assert.ok(t[root]!.start < firstEnd, `${root} starts with the others`);
        // …and the chain still holds where one step needs another.
        const before = (a: string, b: string) =>
            assert.ok(t[a]!.end <= t[b]!.start, `${a} ends (${t[a]!.end}) before ${b} starts (${t[b]!.start})`);
        before("synapse-service", "nginx-sites");
        before("nginx-sites", "element-site");
        before("nginx-certificate-element", "element-vhost");
        before("element-config-json", "element-site");
        before("postgres-database", "synapse-secrets-yaml");
    });

    it("replaces every step and file delete-first, so no delete undoes a newer create", () => {
        const steps = result.resources.filter((r) => r.type === COMMAND || r.type === FILE);
        assert.deepEqual(
            steps.filter((r) => !r.deleteBeforeReplace).map((r) => r.name),
            [],
        );
    });

    it("orders by values a preview knows: only restart/reload steps wait on what files become", async () => {
        // A preview in which every step's and file's own outputs are unknown (all of them change):
        // whatever takes a value derived from those shows as changing too. Only the steps that
        // (re)start a service after its files change may: everything else must stay known.
        const preview = await runs.preview;
        assert.equal(preview.error, undefined);
        const unknown = (v: unknown): boolean =>
            v === "04da6b54-80e4-46f7-96ec-b56ff0331ba9" ||
            (Array.isArray(v)
                ? v.some(unknown)
                : v !== null && typeof v === "object" && Object.values(v).some(unknown));
        const withUnknowns = preview.resources
            .filter((r) => r.custom)
            .filter((r) => Object.entries(r.inputs).some(([k, v]) => k !== "__provider" && unknown(v)))
            .map((r) => r.name)
            .sort();
        assert.deepEqual(withUnknowns, ["element-site", "firewall-apply", "nginx-sites", "synapse-service"]);
        const known = Object.entries(preview.outputs)
            .filter(([, o]) => unknown(o.value))
            .map(([k]) => k);
        assert.deepEqual(known, [], "stack outputs known in a preview");
    });

    it("exports as a secret the registration secret that secrets.yaml gives Synapse", () => {
        const out = result.outputs.registrationSharedSecret!;
        assert.equal(out.secret, true);
        const secretsYaml = parseYaml(allStrings(byName(result, "synapse-secrets-yaml").inputs.content)[0]!) as Record<
            string,
            unknown
        >;
        assert.equal(out.value, secretsYaml.registration_shared_secret);
        assert.equal(out.value, generated(result, "synapse-registration-shared-secret"));
        assert.deepEqual(
            [secretsYaml.macaroon_secret_key, secretsYaml.form_secret].map(
                (v) => typeof v === "string" && v !== out.value,
            ),
            [true, true],
            "three distinct secrets",
        );
        const input = byName(result, "synapse-registration-shared-secret").inputs;
        assert.deepEqual([input.length, input.special], [48, false]);
    });

    it("delivers secrets on stdin, marked secret, and the SSH key only inside a secret connection", () => {
        const fedSecrets = result.resources.filter((r) => r.type === COMMAND && r.inputs.stdin !== undefined);
        assert.deepEqual(fedSecrets.map((r) => r.name).sort(), ["postgres-database"]);
        for (const r of fedSecrets) {
            assert.ok(isSecretValue(r.inputs.stdin), `${r.name} stdin is secret`);
            assert.equal(r.inputs.logging, "stderr", `${r.name} does not log stdout`);
        }
        const secretsFile = byName(result, "synapse-secrets-yaml").inputs;
        assert.ok(isSecretValue(secretsFile.content), "secrets.yaml content is secret");
        assert.ok(
            allStrings(secretsFile.content).join().includes(generated(result, "synapse-registration-shared-secret")),
        );
        assert.ok(!isSecretValue(byName(result, "synapse-homeserver-yaml").inputs.content), "homeserver.yaml is plain");
        for (const r of result.resources.filter((r) => r.type === COMMAND || r.type === FILE)) {
            assert.ok(isSecretValue(r.inputs.connection), `${r.name} connection is secret`);
            assert.equal((r.inputs.connection as { value: { privateKey: string } }).value.privateKey, TEST_SSH_KEY);
        }
    });

    it("puts no secret's plaintext in any command line, environment, or plain input or output", () => {
        const secrets = [TEST_SSH_KEY, "TESTKEYMATERIAL", "cf-test-token", ...generatedSecrets(result)];
        assert.equal(secrets.length, 7);
        for (const r of result.resources) {
            const exposed = [
                ...(r.type === COMMAND
                    ? allStrings([r.inputs.create, r.inputs.update, r.inputs.delete, r.inputs.environment])
                    : []),
                ...plainStrings(r.inputs),
            ].join("\n");
            for (const s of secrets) assert.ok(!exposed.includes(s), `${r.name} exposes a secret`);
        }
        const outputs = Object.values(result.outputs)
            .filter((o) => !o.secret)
            .flatMap((o) => allStrings(o.value))
            .join("\n");
        for (const s of secrets) assert.ok(!outputs.includes(s), "a plain stack output exposes a secret");
    });

    it("exports the URLs, well-known JSON and the first-admin command", () => {
        assert.equal(result.outputs.serverName!.value, "example.org");
        assert.equal(result.outputs.homeserverUrl!.value, "https://matrix.example.org");
        assert.equal(result.outputs.elementUrl!.value, "https://element.example.org");
        const wk = result.outputs.wellKnown!.value as { server: string; client: string };
        assert.deepEqual(JSON.parse(wk.server), { "m.server": "matrix.example.org:443" });
        assert.deepEqual(JSON.parse(wk.client), { "m.homeserver": { base_url: "https://matrix.example.org" } });
        assert.match(
            String(result.outputs.firstAdminCommand!.value),
            /register_new_matrix_user -c \/etc\/matrix-synapse\/secrets.yaml/,
        );
        assert.deepEqual(result.outputs.dnsRecordsToCreate!.value, []);
    });

    it("gives delete scripts only to what destroy takes away, and keeps data unless purged", () => {
        const withDelete = result.resources.filter((r) => r.type === COMMAND && typeof r.inputs.delete === "string");
        assert.deepEqual(withDelete.map((r) => r.name).sort(), [
            "backup-timer",
            "element-data",
            "element-site",
            "firewall-apply",
            "firewall-install",
            "nginx-certificate-apex",
            "nginx-certificate-element",
            "nginx-certificate-homeserver",
            "nginx-install",
            "nginx-sites",
            "postgres-data",
            "synapse-data",
            "synapse-service",
        ]);
        const del = (n: string) => String(byName(result, n).inputs.delete);
        assert.match(del("synapse-service"), /systemctl disable --now matrix-synapse/);
        assert.doesNotMatch(del("synapse-data"), /rm -rf/, "data is kept by default");
        assert.doesNotMatch(del("postgres-data"), /DROP/, "the database is kept by default");
        assert.doesNotMatch(del("element-data"), /rm -rf/, "releases are kept by default");
        assert.match(del("nginx-certificate-element"), /certbot delete -n --cert-name \S*element\.example\.org/);
        // Files that only serve the homeserver go with it; config stays for the next deploy.
        const removed = result.resources.filter((r) => r.type === FILE && r.inputs.removeOnDelete === true);
        assert.deepEqual(removed.map((r) => r.name).sort(), [
            "element-vhost",
            "firewall-rules",
            "nginx-apex-vhost",
            "nginx-homeserver-vhost",
            "nginx-synapse-upstreams",
        ]);
    });

    it("with purgeOnDestroy, changes only the three data steps' delete scripts", async () => {
        const purging = await runs.purging;
        const before = new Map(result.resources.map((r) => [r.urn, JSON.stringify(r.inputs)]));
        const changed = purging.resources.filter((r) => before.get(r.urn) !== JSON.stringify(r.inputs));
        assert.deepEqual(changed.map((r) => r.name).sort(), ["element-data", "postgres-data", "synapse-data"]);
        const del = (n: string) => String(byName(purging, n).inputs.delete);
        assert.match(del("postgres-data"), /DROP DATABASE IF EXISTS/);
        assert.match(del("synapse-data"), /rm -rf .*\/var\/lib\/matrix-synapse/);
        assert.match(del("element-data"), /rm -rf .*\/var\/www\/element/);
        for (const r of changed) {
            const { delete: _d, ...rest } = r.inputs;
            const { delete: _e, ...was } = byName(result, r.name).inputs;
            assert.deepEqual(rest, was, `${r.name}: only its delete script differs`);
        }
    });

    it("loads the same way under ts-node, as the Pulumi CLI runs it, and its managed-file provider works", async () => {
        const viaTsNode = await runs.viaTsNode;
        assert.equal(viaTsNode.error, undefined);
        // The serialized provider is the transpiler's text; the dynamic provider host ignores it in diffs.
        const inputs = (r: ProgramResult["resources"][number]) => {
            const { __provider: _p, ...rest } = r.inputs;
            return rest;
        };
        assert.deepEqual(
            viaTsNode.resources.map((r) => [r.urn, inputs(r)]),
            result.resources.map((r) => [r.urn, inputs(r)]),
        );
        // The engine runs that text, not the source: load it as its dynamic-provider host does.
        const file = byName(viaTsNode, "synapse-secrets-yaml");
        const requireFromString = require("require-from-string") as (code: string) => { handler(): ProviderUnderTest };
        const provider = requireFromString(String(file.inputs.__provider)).handler();
        const state = {
            ...(unwrap(file.inputs) as Record<string, unknown>),
            mode: "640",
            generation: 1,
        };
        const news = unwrap(file.inputs) as Record<string, unknown>;
        assert.equal((await provider.diff("id", state, news)).changes, false, "no drift: no change");
        assert.equal((await provider.diff("id", { ...state, mode: "644" }, news)).changes, true, "a chmod is drift");
        // Refresh and delete reach the host with the stack's current key, not the recorded one.
        await provider.configure({
            config: {
                get: (key: string) =>
                    ({
                        "matrix:machine": JSON.stringify({ ipv4: "203.0.113.99" }),
                        "matrix:sshPrivateKey": "NEW KEY",
                    })[key],
                require: () => "",
            },
        });
        const c = provider.currentConnection(state);
        assert.deepEqual([c.host, c.port, c.user, c.privateKey], ["203.0.113.99", 22, "root", "NEW KEY"]);
    });

    it("renders identical inputs for every resource when run twice with one config", async () => {
        const again = await runs.again;
        assert.deepEqual(
            again.resources.map((r) => [r.urn, r.inputs]),
            result.resources.map((r) => [r.urn, r.inputs]),
        );
    });

    const blastRadius: [string, Record<string, unknown>, string[]][] = [
        [
            // Element's "Create Account" follows it.
            "synapse.enableRegistration",
            { "matrix:synapse": { enableRegistration: true } },
            ["element-config-json", "synapse-homeserver-yaml", "synapse-service"],
        ],
        [
            "synapse.maxUploadSize",
            { "matrix:synapse": { maxUploadSize: "100M" } },
            ["nginx-homeserver-vhost", "nginx-sites", "synapse-homeserver-yaml", "synapse-service"],
        ],
        ["synapse.version", { "matrix:synapse": { version: "1.162.0" } }, ["synapse-install", "synapse-service"]],
        ["acme.email", { "matrix:acme": { email: "ops@example.org" } }, ["nginx-acme-account"]],
        ["backup.retention", { "matrix:backup": { retention: 14 } }, ["backup-timer"]],
        [
            "synapse.extraConfig",
            { "matrix:synapse": { extraConfig: { presence: { enabled: false } } } },
            ["synapse-homeserver-yaml", "synapse-service"],
        ],
        [
            "element.version",
            { "matrix:element": { version: "1.12.30", sha256: "a".repeat(64) } },
            ["element-config-json", "element-release", "element-site"],
        ],
        [
            // A new tarball of the same version unpacks into a folder of its own, with its own config.json.
            "element.sha256",
            { "matrix:element": { version: "1.12.29", sha256: "b".repeat(64) } },
            ["element-config-json", "element-release", "element-site"],
        ],
        ["purgeOnDestroy", { "matrix:purgeOnDestroy": "true" }, ["element-data", "postgres-data", "synapse-data"]],
        [
            "synapse.mediaRetention",
            { "matrix:synapse": { mediaRetention: { remote: "30d" } } },
            ["synapse-homeserver-yaml", "synapse-service"],
        ],
        ["support", { "matrix:support": { page: "https://example.org/help" } }, ["nginx-apex-vhost", "nginx-sites"]],
    ];
    const changedRuns = blastRadius.map(([, overrides]) => runProgramSoon(baseConfig(overrides)));
    for (const [i, [key, , expected]] of blastRadius.entries()) {
        it(`changes exactly ${expected.join(", ")} when ${key} changes`, async () => {
            const changedRun = await changedRuns[i]!;
            assert.equal(changedRun.error, undefined);
            const before = new Map(result.resources.map((r) => [r.urn, JSON.stringify(r.inputs)]));
            const changed = changedRun.resources.filter((r) => before.get(r.urn) !== JSON.stringify(r.inputs));
            assert.deepEqual(changed.map((r) => r.name).sort(), expected);
            assert.deepEqual(
                changedRun.resources.map((r) => r.urn),
                result.resources.map((r) => r.urn),
            );
        });
    }
});

describe("a stack without Cloudflare, delegating elsewhere", () => {
    const run = runProgramSoon(
        baseConfig({
            "matrix:dns": undefined,
            "cloudflare:apiToken": undefined,
            "matrix:delegation": "external",
            "matrix:machine": { ipv4: "203.0.113.10" },
        }),
    );
    let result: ProgramResult;
    beforeAll(async () => {
        result = await run;
        assert.equal(result.error, undefined);
    });

    it("creates no DNS component and no apex certificate", () => {
        assert.deepEqual(names(result, RECORD), []);
        assert.ok(!names(result).includes("dns"));
        assert.ok(!names(result).includes("nginx-certificate-apex"));
        assert.deepEqual(
            byName(result, "nginx-certificate-homeserver").dependencies.filter((d) => d.includes("dns")),
            [],
        );
    });

    it("lists the records to create by hand", () => {
        assert.deepEqual(result.outputs.dnsRecordsToCreate!.value, [
            "matrix.example.org A 203.0.113.10",
            "element.example.org A 203.0.113.10",
        ]);
    });

    it("removes an apex vhost left from an earlier delegation", () => {
        assert.match(String(byName(result, "nginx-sites").inputs.create), /rm -f .*matrix-apex\.conf/);
    });
});

describe("a stack without Cloudflare, delegating to its own apex", () => {
    const run1 = runProgramSoon(
        baseConfig({
            "matrix:dns": undefined,
            "cloudflare:apiToken": undefined,
            "matrix:machine": { ipv4: "203.0.113.10" },
        }),
    );
    it("lists a record for every name that gets a certificate, the apex included", async () => {
        const result = await run1;
        assert.equal(result.error, undefined);
        assert.ok(names(result).includes("nginx-certificate-apex"));
        assert.deepEqual(result.outputs.dnsRecordsToCreate!.value, [
            "matrix.example.org A 203.0.113.10",
            "element.example.org A 203.0.113.10",
            "example.org A 203.0.113.10",
        ]);
    });
});

describe("a stack that brings its own secrets and DNS (no random or Cloudflare provider)", () => {
    const own = {
        registrationSharedSecret: "ownRegistrationSecret-0123456789abcdef",
        macaroonSecretKey: "ownMacaroonKey-0123456789abcdef",
        formSecret: "ownFormSecret-0123456789abcdef",
        databasePassword: "ownDatabasePassword-0123456789",
    };
    let result: ProgramResult;
    const run2 = runProgramSoon(
        baseConfig({ "matrix:dns": undefined, "cloudflare:apiToken": undefined, "matrix:secrets": own }),
    );
    beforeAll(async () => {
        result = await run2;
        assert.equal(result.error, undefined);
    });

    it("registers no random or Cloudflare resource", () => {
        const types = new Set(result.resources.filter((r) => r.custom).map((r) => r.type));
        assert.deepEqual([...types].sort(), [COMMAND, FILE]);
    });

    it("uses the stack's secrets, still as secrets, and only on stdin", () => {
        assert.deepEqual(result.outputs.registrationSharedSecret, {
            value: own.registrationSharedSecret,
            secret: true,
        });
        const secretsFile = allStrings(byName(result, "synapse-secrets-yaml").inputs.content).join("");
        for (const v of [own.registrationSharedSecret, own.macaroonSecretKey, own.formSecret, own.databasePassword]) {
            assert.ok(secretsFile.includes(v));
        }
        for (const r of result.resources) {
            const exposed = [
                ...plainStrings(r.inputs),
                ...(r.type === COMMAND ? allStrings(r.inputs.create) : []),
            ].join("\n");
            for (const v of Object.values(own)) assert.ok(!exposed.includes(v), `${r.name} exposes a secret`);
        }
    });

    const run3 = runProgramSoon(baseConfig({ "matrix:secrets": { databasePassword: own.databasePassword } }));
    it("mixes brought and generated secrets", async () => {
        const mixed = await run3;
        assert.equal(mixed.error, undefined);
        assert.deepEqual(names(mixed, PASSWORD).sort(), [
            "synapse-form-secret",
            "synapse-macaroon-secret-key",
            "synapse-registration-shared-secret",
        ]);
    });

    const run4 = runProgramSoon(baseConfig({ "matrix:secrets": own }), {
        plainKeys: ["matrix:secrets", "matrix:sshPrivateKey"],
    });
    it("refuses secrets stored in plain text, naming the fix", async () => {
        const plain = await run4;
        assert.match(
            plain.error ?? "",
            /matrix:secrets: is stored in plain text; set it again with pulumi config set --secret/,
        );
        assert.match(plain.error ?? "", /matrix:sshPrivateKey: is stored in plain text/);
        assert.deepEqual(
            plain.resources.filter((r) => r.custom),
            [],
        );
    });
});

describe("declared users", () => {
    const run5 = runProgramSoon(baseConfig({ "matrix:users": [{ name: "alice", admin: true }, { name: "bob" }] }));
    it("creates each account once, after Synapse is healthy, its password a secret on stdin", async () => {
        const result = await run5;
        assert.equal(result.error, undefined);
        assert.ok(names(result).includes("users"));
        for (const name of ["alice", "bob"]) {
            const step = byName(result, `users-${name}`);
            assert.ok(isSecretValue(step.inputs.stdin));
            // The account's password is what its RandomPassword made, on stdin only.
            assert.equal(allStrings(step.inputs.stdin)[0], generated(result, `users-${name}-password`));
            assert.deepEqual(byName(result, `users-${name}-password`).inputs.length, 32);
            assert.ok(dependsOn(result, `users-${name}`, "synapse-service"));
            assert.ok(
                !allStrings(step.inputs.create)
                    .join()
                    .includes(generated(result, `users-${name}-password`)),
            );
        }
        assert.match(String(byName(result, "users-alice").inputs.create), /--exists-ok -u '\\''alice'\\''/);
        assert.match(String(byName(result, "users-alice").inputs.create), /--admin/);
        assert.match(String(byName(result, "users-bob").inputs.create), /--no-admin/);
        // The output hands out exactly the passwords the accounts were created with.
        const stdin = (n: string) => allStrings(byName(result, `users-${n}`).inputs.stdin)[0];
        assert.deepEqual(result.outputs.userPasswords, {
            value: { alice: stdin("alice"), bob: stdin("bob") },
            secret: true,
        });
        assert.notEqual(stdin("alice"), stdin("bob"));
    });

    const run6 = runProgramSoon(baseConfig());
    it("adds no component when there are none", async () => {
        const result = await run6;
        assert.ok(!names(result).includes("users"));
        assert.deepEqual(result.outputs.userPasswords, { value: {}, secret: true });
    });
});

describe("delegation none", () => {
    const run7 = runProgramSoon(baseConfig({ "matrix:delegation": "none" }));
    it("serves the homeserver on the domain itself, with federation on 8448", async () => {
        const result = await run7;
        assert.equal(result.error, undefined);
        assert.equal(result.outputs.homeserverUrl!.value, "https://example.org");
        assert.deepEqual(names(result, RECORD).sort(), [
            "dns-element-a",
            "dns-element-aaaa",
            "dns-homeserver-a",
            "dns-homeserver-aaaa",
        ]);
        const sites = String(byName(result, "nginx-homeserver-vhost").inputs.content);
        assert.match(sites, /listen 8448 ssl/);
    });
});

// One test per bad config (54 of them) is in tests/hardening/badConfigs.test.ts.
describe("bad stack config", () => {
    const run8 = runProgramSoon(
        baseConfig({ "matrix:domain": "bad..name", "matrix:acme": {}, "matrix:synapse": { version: "x" } }),
    );
    it("reports every problem at once", async () => {
        const result = await run8;
        assert.match(result.error ?? "", /3 problems/);
    });
});

describe("a closed federation (matrix:federation)", () => {
    const CA = "-----BEGIN CERTIFICATE-----\nMIIBfederationCA\n-----END CERTIFICATE-----\n";
    const run = runProgramSoon(
        baseConfig({
            "matrix:federation": {
                caBundle: CA,
                allowedServers: ["other.example.net"],
                allowedIpRanges: ["10.0.0.0/8"],
            },
        }),
    );
    it("trusts only the stack's CA, talks only to the listed servers, reaches the listed private ranges", async () => {
        const result = await run;
        assert.equal(result.error, undefined);
        const hs = parseYaml(String(byName(result, "synapse-homeserver-yaml").inputs.content)) as Record<
            string,
            unknown
        >;
        assert.deepEqual(hs.federation_custom_ca_list, ["/etc/matrix-synapse/federation-ca.pem"]);
        assert.deepEqual(hs.federation_domain_whitelist, ["other.example.net"]);
        assert.deepEqual(hs.ip_range_whitelist, ["10.0.0.0/8"]);
        assert.deepEqual(hs.trusted_key_servers, [], "no matrix.org in a closed federation");
        const ca = byName(result, "synapse-federation-ca");
        assert.equal(allStrings(ca.inputs.content)[0], CA);
        assert.equal(ca.inputs.path, "/etc/matrix-synapse/federation-ca.pem");
        // Synapse reads it: a change or a restored edit restarts it.
        assert.ok(byName(result, "synapse-service").dependencies.some((d) => d.endsWith("::synapse-federation-ca")));
    });
    it("leaves federation open and the CA file out by default", async () => {
        const result = await runProgramSoon(baseConfig());
        const hs = parseYaml(String(byName(result, "synapse-homeserver-yaml").inputs.content)) as Record<
            string,
            unknown
        >;
        assert.equal(hs.federation_domain_whitelist, undefined);
        assert.deepEqual(hs.trusted_key_servers, [{ server_name: "matrix.org" }]);
        assert.ok(!names(result).includes("synapse-federation-ca"));
    });
});

describe("host firewall (matrix:firewall)", () => {
    const rules = (r: ProgramResult) => allStrings(byName(r, "firewall-rules").inputs.content)[0]!;
    const run9 = runProgramSoon(baseConfig({ "matrix:machine": { ipv4: "203.0.113.10", sshPort: 2222 } }));
    it("lets in only SSH, 80 and 443 by default, and says so as an output", async () => {
        const result = await run9;
        assert.equal(result.error, undefined);
        assert.match(rules(result), /tcp dport \{ 80, 443, 2222 \} accept/);
        assert.match(rules(result), /policy drop;/);
        assert.deepEqual(result.outputs.openTcpPorts!.value, [80, 443, 2222]);
        assert.ok(byName(result, "firewall-apply").dependencies.some((d) => d.endsWith("::firewall-rules")));
    });
    const run10 = runProgramSoon(
        baseConfig({ "matrix:delegation": "none", "matrix:firewall": { allowTcpPorts: [8080, "9090"] } }),
    );
    it("adds 8448 for delegation none and the stack's extra ports", async () => {
        const result = await run10;
        assert.equal(result.error, undefined);
        assert.match(rules(result), /tcp dport \{ 22, 80, 443, 8080, 8448, 9090 \} accept/);
    });
    const run11 = runProgramSoon(baseConfig({ "matrix:firewall": { enabled: false } }));
    it("creates nothing when disabled", async () => {
        const result = await run11;
        assert.equal(result.error, undefined);
        assert.ok(!names(result).some((n) => n.startsWith("firewall")));
        assert.deepEqual(result.outputs.openTcpPorts!.value, []);
    });
});

describe("Synapse workers (matrix:synapse.workers)", () => {
    const none = runProgramSoon(baseConfig());
    const small = runProgramSoon(baseConfig({ "matrix:synapse": { workers: "small" } }));
    const deps = (r: ProgramResult, name: string) => byName(r, name).dependencies.map((d) => d.split("::").pop());

    it("small: Redis, a template unit, a config file per worker, and a step that runs them", async () => {
        const r = await small;
        assert.equal(r.error, undefined);
        const workerNames = ["background1", "client1", "federation_sender1", "media1", "sync1", "sync2"];
        assert.deepEqual(
            names(r)
                .filter((n) => n.startsWith("synapse-redis") || n.startsWith("synapse-workers"))
                .sort(),
            [
                "synapse-redis",
                "synapse-redis-config",
                "synapse-redis-service",
                "synapse-redis-target",
                "synapse-redis-unit",
                "synapse-workers",
                ...workerNames.map((w) => `synapse-workers-${w}`),
                "synapse-workers-service",
                "synapse-workers-unit",
            ].sort(),
        );
        for (const w of workerNames) {
            const file = byName(r, `synapse-workers-${w}`);
            assert.equal(file.inputs.path, `/etc/matrix-synapse/workers/${w}.yaml`);
            assert.equal((parseYaml(String(file.inputs.content)) as { worker_name: string }).worker_name, w);
        }
        assert.match(String(byName(r, "packages-install").inputs.create), /redis-server/);
    });

    it("small: Redis before the main process, the workers after it, nginx's routes after them", async () => {
        const r = await small;
        assert.ok(deps(r, "synapse-service").includes("synapse-redis-service"));
        assert.ok(deps(r, "synapse-workers-service").includes("synapse-service"));
        // The routes file takes its layout from the workers' step (by URN, known in a preview).
        const routes = String(byName(r, "nginx-synapse-upstreams").inputs.content);
        assert.match(
            routes,
            /upstream matrix_synapse_sync \{\n\s+hash \$matrix_sync_user consistent;\n\s+server 127\.0\.0\.1:8111;\n\s+server 127\.0\.0\.1:8112;/,
        );
        assert.match(routes, /"~\^\/_matrix\/media\/" matrix_synapse_media;/);
    });

    it("small: the shared config names Redis, the replication socket and each duty's worker", async () => {
        const r = await small;
        const hs = parseYaml(String(byName(r, "synapse-homeserver-yaml").inputs.content)) as Record<string, unknown>;
        assert.deepEqual(hs.redis, { enabled: true, path: "/run/matrix-synapse-redis/redis.sock" });
        assert.deepEqual(hs.instance_map, { main: { path: "/run/matrix-synapse/replication.sock" } });
        assert.deepEqual(hs.federation_sender_instances, ["federation_sender1"]);
        assert.equal(hs.run_background_tasks_on, "background1");
        assert.equal(hs.enable_media_repo, false);
        assert.equal(hs.media_instance_running_background_jobs, "media1");
        const listeners = hs.listeners as { path?: string; resources: { names: string[] }[] }[];
        assert.deepEqual(
            listeners.filter((l) => l.path).map((l) => [l.path, l.resources[0]!.names]),
            [["/run/matrix-synapse/replication.sock", ["replication"]]],
        );
    });

    it("none → small changes the Synapse files, the routes and the package list, never PostgreSQL", async () => {
        const [a, b] = [await none, await small];
        const before = new Map(a.resources.map((x) => [x.urn, JSON.stringify(x.inputs)]));
        const changed = b.resources.filter((x) => before.has(x.urn) && before.get(x.urn) !== JSON.stringify(x.inputs));
        assert.deepEqual(changed.map((x) => x.name).sort(), [
            "nginx-sites",
            "nginx-synapse-upstreams",
            "packages-install",
            "synapse-homeserver-yaml",
            "synapse-service",
            "synapse-unit",
        ]);
        // Going back removes exactly what was added.
        const added = b.resources.filter((x) => !before.has(x.urn)).map((x) => x.name);
        assert.ok(
            added.every((n) => n.startsWith("synapse-redis") || n.startsWith("synapse-workers")),
            added.join(),
        );
    });
});

describe("metrics and alerts (matrix:monitoring)", () => {
    const off = runProgramSoon(baseConfig());
    const on = runProgramSoon(baseConfig({ "matrix:monitoring": { enabled: true } }));
    const smtp = runProgramSoon(
        baseConfig({
            "matrix:monitoring": {
                enabled: true,
                email: {
                    to: "ops@example.org",
                    from: "am@example.org",
                    smarthost: "smtp.example.org:587",
                    username: "am",
                },
            },
            "matrix:secrets": { smtpPassword: "smtpPassword0123456789" },
        }),
    );

    it("adds only the monitoring files and steps, Synapse's metrics listener and the packages", async () => {
        const [a, b] = [await off, await on];
        assert.equal(b.error, undefined);
        const before = new Map(a.resources.map((x) => [x.urn, JSON.stringify(x.inputs)]));
        const changed = b.resources.filter((x) => before.has(x.urn) && before.get(x.urn) !== JSON.stringify(x.inputs));
        assert.deepEqual(changed.map((x) => x.name).sort(), [
            "packages-install",
            "synapse-homeserver-yaml",
            "synapse-service",
        ]);
        const added = b.resources.filter((x) => !before.has(x.urn)).map((x) => x.name);
        assert.ok(added.length > 0 && added.every((n) => n.startsWith("monitoring")), added.join());
        assert.match(String(byName(b, "packages-install").inputs.create), /prometheus-alertmanager/);
        const hs = parseYaml(String(byName(b, "synapse-homeserver-yaml").inputs.content)) as {
            enable_metrics: boolean;
            listeners: { type: string; port: number; bind_addresses: string[] }[];
        };
        assert.equal(hs.enable_metrics, true);
        assert.deepEqual(
            hs.listeners.filter((l) => l.type === "metrics").map((l) => [l.port, l.bind_addresses]),
            [[9000, ["127.0.0.1"]]],
        );
    });

    it("binds every service to loopback and scrapes Synapse, the node and PostgreSQL", async () => {
        const r = await on;
        for (const s of ["prometheus", "alertmanager", "node", "postgres"]) {
            const dropIn = String(byName(r, `monitoring-${s}-dropin`).inputs.content);
            assert.match(dropIn, /^EnvironmentFile=$/m);
            assert.match(dropIn, /--web\.listen-address=127\.0\.0\.1:\d+/);
        }
        const prom = parseYaml(String(byName(r, "monitoring-prometheus-yml").inputs.content)) as {
            scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
        };
        assert.deepEqual(
            prom.scrape_configs.map((j) => [j.job_name, j.static_configs.flatMap((c) => c.targets)]),
            [
                ["synapse", ["127.0.0.1:9000"]],
                ["node", ["127.0.0.1:9100"]],
                ["postgres", ["127.0.0.1:9187"]],
                ["prometheus", ["127.0.0.1:9090"]],
                ["alertmanager", ["127.0.0.1:9093"]],
            ],
        );
        const rules = parseYaml(String(byName(r, "monitoring-rules-yml").inputs.content)) as {
            groups: { rules: { alert: string }[] }[];
        };
        assert.deepEqual(
            rules.groups[0]!.rules.map((x) => x.alert),
            [
                "SynapseDown",
                "FederationSendQueueGrowing",
                "CertificateExpiringSoon",
                "DiskSpaceLow",
                "BackupTooOld",
                "PostgresDown",
            ],
        );
    });

    it("runs the services only after Synapse, PostgreSQL and the backups are in place", async () => {
        const r = await on;
        // The exporter's role needs the database; the metrics need the backups' timer.
        for (const d of ["synapse-service", "postgres-database", "backup-timer"]) {
            assert.ok(dependsOn(r, "monitoring-dirs", d), d);
        }
        assert.ok(dependsOn(r, "monitoring-service", "monitoring-prometheus-yml"));
    });

    it("delivers the SMTP password only inside the secret alertmanager.yml", async () => {
        const r = await smtp;
        assert.equal(r.error, undefined);
        const file = byName(r, "monitoring-alertmanager-yml");
        assert.ok(isSecretValue(file.inputs.content), "alertmanager.yml is a secret input");
        assert.equal(file.inputs.mode, "0640");
        assert.equal(file.inputs.group, "prometheus");
        assert.ok(
            !plainStrings(r.resources.map((x) => x.inputs)).some((x) => x.includes("smtpPassword0123456789")),
            "no plain copy anywhere",
        );
        const am = parseYaml(String(unwrap(file.inputs.content))) as {
            receivers: { email_configs: { auth_password: string; require_tls: boolean }[] }[];
        };
        assert.equal(am.receivers[0]!.email_configs[0]!.auth_password, "smtpPassword0123456789");
    });

    it("a retention or scrape interval change touches only the file that holds it and the service step", async () => {
        const [a, b, c] = [
            await on,
            await runProgramSoon(baseConfig({ "matrix:monitoring": { enabled: true, retention: "30d" } })),
            await runProgramSoon(baseConfig({ "matrix:monitoring": { enabled: true, scrapeInterval: "1m" } })),
        ];
        const changed = (x: ProgramResult) => {
            const before = new Map(a.resources.map((r) => [r.urn, JSON.stringify(r.inputs)]));
            return x.resources
                .filter((r) => before.get(r.urn) !== JSON.stringify(r.inputs))
                .map((r) => r.name)
                .sort();
        };
        assert.deepEqual(changed(b), ["monitoring-prometheus-dropin", "monitoring-service"]);
        assert.deepEqual(changed(c), ["monitoring-prometheus-yml", "monitoring-service"]);
    });

    it("with workers, scrapes each process on its own port", async () => {
        const r = await runProgramSoon(
            baseConfig({ "matrix:monitoring": { enabled: true }, "matrix:synapse": { workers: "small" } }),
        );
        const prom = parseYaml(String(byName(r, "monitoring-prometheus-yml").inputs.content)) as {
            scrape_configs: {
                job_name: string;
                static_configs: { targets: string[]; labels: { process: string } }[];
            }[];
        };
        const synapse = prom.scrape_configs.find((j) => j.job_name === "synapse")!;
        const targets = synapse.static_configs.map((c) => [c.labels.process, c.targets[0]]);
        assert.equal(targets.length, 7);
        for (const [process, target] of targets.slice(1)) {
            const worker = parseYaml(String(byName(r, `synapse-workers-${process}`).inputs.content)) as {
                worker_listeners: { type: string; port: number }[];
            };
            const metrics = worker.worker_listeners.find((l) => l.type === "metrics");
            assert.equal(`127.0.0.1:${metrics?.port}`, target, String(process));
        }
    });
});

describe("calls (matrix:rtc, matrix:turn)", () => {
    const SHA = (c: string) => c.repeat(64);
    const rtc = {
        livekit: { version: "1.13.5", sha256: SHA("a") },
        jwtService: { version: "0.5.0", sha256: SHA("b") },
    };
    const off = runProgramSoon(baseConfig());
    const rtcOn = runProgramSoon(baseConfig({ "matrix:rtc": rtc }));
    const turnOn = runProgramSoon(baseConfig({ "matrix:turn": {} }));
    const changedFrom = (a: ProgramResult, b: ProgramResult) => {
        const before = new Map(a.resources.map((x) => [x.urn, JSON.stringify(x.inputs)]));
        return {
            changed: b.resources
                .filter((x) => before.has(x.urn) && before.get(x.urn) !== JSON.stringify(x.inputs))
                .map((x) => x.name)
                .sort(),
            added: b.resources.filter((x) => !before.has(x.urn)).map((x) => x.name),
        };
    };

    it("rtc adds its own resources and changes only Synapse's config, the vhosts and the firewall", async () => {
        const [a, b] = [await off, await rtcOn];
        assert.equal(b.error, undefined);
        const { changed, added } = changedFrom(a, b);
        assert.deepEqual(changed, [
            "firewall-apply",
            "firewall-rules",
            "nginx-apex-vhost",
            "nginx-homeserver-vhost",
            "nginx-sites",
            "synapse-homeserver-yaml",
            "synapse-service",
        ]);
        assert.ok(added.length > 0 && added.every((n) => n.startsWith("rtc")), added.join());
        assert.deepEqual(b.outputs.openUdpPorts!.value, ["7882"]);
        assert.deepEqual(b.outputs.openTcpPorts!.value, [22, 80, 443, 7881]);
        // The services behind the homeserver vhost; the focus in the apex's client document.
        assert.match(String(byName(b, "nginx-homeserver-vhost").inputs.content), /location \^~ \/livekit\/sfu\//);
    });

    it("turn adds coturn's resources, the package and Synapse's secret", async () => {
        const [a, b] = [await off, await turnOn];
        assert.equal(b.error, undefined);
        const { changed, added } = changedFrom(a, b);
        assert.deepEqual(changed, [
            "firewall-apply",
            "firewall-rules",
            "packages-install",
            "synapse-homeserver-yaml",
            "synapse-secrets-yaml",
            "synapse-service",
        ]);
        assert.deepEqual(
            added.filter((n) => !n.startsWith("turn")),
            ["synapse-turn-shared-secret"],
        );
        assert.match(String(byName(b, "packages-install").inputs.create), /systemctl mask coturn/);
        assert.deepEqual(b.outputs.openUdpPorts!.value, ["3478", "49152-49251"]);
    });

    it("serves the focus in the well-known output and announces it to Synapse", async () => {
        const r = await rtcOn;
        const focus = [{ type: "livekit", livekit_service_url: "https://matrix.example.org/livekit/jwt" }];
        const wk = r.outputs.wellKnown!.value as { client: string };
        assert.deepEqual(JSON.parse(wk.client)["org.matrix.msc4143.rtc_foci"], focus);
        const hs = parseYaml(String(byName(r, "synapse-homeserver-yaml").inputs.content)) as {
            matrix_rtc: { transports: unknown };
        };
        assert.deepEqual(hs.matrix_rtc.transports, focus);
        const jwt = String(byName(r, "rtc-jwt-unit").inputs.content);
        assert.match(jwt, /^Environment="LIVEKIT_FULL_ACCESS_HOMESERVERS=example.org"$/m);
        assert.match(jwt, /^Environment="LIVEKIT_URL=wss:\/\/matrix.example.org\/livekit\/sfu"$/m);
        assert.match(jwt, /^ExecStart=\/opt\/matrix-rtc\/lk-jwt-service-v0.5.0-bbbbbbbbbbbb$/m);
    });

    it("delivers the LiveKit and TURN secrets only inside secret files readable by their services", async () => {
        const r = await runProgramSoon(baseConfig({ "matrix:rtc": rtc, "matrix:turn": {} }));
        assert.equal(r.error, undefined);
        for (const [name, group] of [
            ["rtc-livekit-yaml", "matrix-livekit"],
            ["rtc-jwt-keys", "matrix-lk-jwt"],
            ["turn-config", "turnserver"],
            ["synapse-secrets-yaml", "matrix-synapse"],
        ] as const) {
            const f = byName(r, name);
            assert.ok(isSecretValue(f.inputs.content), `${name} is a secret input`);
            assert.deepEqual([f.inputs.mode, f.inputs.group], ["0640", group], name);
        }
        const livekit = parseYaml(String(unwrap(byName(r, "rtc-livekit-yaml").inputs.content))) as {
            keys: Record<string, string>;
        };
        const apiSecret = Object.values(livekit.keys)[0]!;
        const turnSecret = /^static-auth-secret=(.+)$/m.exec(
            String(unwrap(byName(r, "turn-config").inputs.content)),
        )![1]!;
        const secrets = parseYaml(String(unwrap(byName(r, "synapse-secrets-yaml").inputs.content))) as {
            turn_shared_secret: string;
        };
        assert.equal(secrets.turn_shared_secret, turnSecret, "Synapse and coturn share the secret");
        assert.ok(
            String(unwrap(byName(r, "rtc-jwt-keys").inputs.content)).includes(apiSecret),
            "both services share the API secret",
        );
        for (const secret of [apiSecret, turnSecret]) {
            assert.ok(secret.length >= 32);
            assert.ok(!plainStrings(r.resources.map((x) => x.inputs)).some((x) => x.includes(secret)), "no plain copy");
        }
    });

    it("an rtc release change touches only its download, its unit and the service step", async () => {
        const [a, b] = [
            await rtcOn,
            await runProgramSoon(
                baseConfig({ "matrix:rtc": { ...rtc, livekit: { version: "1.13.6", sha256: SHA("c") } } }),
            ),
        ];
        assert.deepEqual(changedFrom(a, b).changed, ["rtc-livekit-release", "rtc-livekit-unit", "rtc-service"]);
    });
});

describe("the well-known support document (matrix:support)", () => {
    it("is served on the apex beside the other two, and exported for delegation external", async () => {
        const support = { contacts: [{ email: "admin@example.org" }], page: "https://example.org/help" };
        const r = await runProgramSoon(baseConfig({ "matrix:support": support }));
        assert.equal(r.error, undefined);
        assert.match(
            String(byName(r, "nginx-apex-vhost").inputs.content),
            /location = \/\.well-known\/matrix\/support/,
        );
        const ext = await runProgramSoon(baseConfig({ "matrix:support": support, "matrix:delegation": "external" }));
        const wellKnown = ext.outputs.wellKnown?.value as { support: string };
        assert.deepEqual(JSON.parse(wellKnown.support), {
            contacts: [{ email_address: "admin@example.org", role: "m.role.admin" }],
            support_page: "https://example.org/help",
        });
    });
});

describe("the database on its own host (matrix:database)", () => {
    const DB = "203.0.113.20";
    const run = runProgramSoon(
        baseConfig({ "matrix:database": { machine: { ipv4: DB, sshHostKey: "ssh-ed25519 AAAAdbhost" } } }),
    );
    const hostOf = (r: ProgramResult, name: string) =>
        (byName(r, name).inputs.connection as { value: { host: string } }).value.host;

    it("deploys PostgreSQL, its packages and its firewall to that host, Synapse to the machine", async () => {
        const r = await run;
        assert.equal(r.error, undefined);
        for (const n of [
            "postgres-install",
            "postgres-database",
            "postgres-network",
            "database-packages-install",
            "database-firewall-apply",
        ]) {
            assert.equal(hostOf(r, n), DB, n);
        }
        for (const n of ["synapse-install", "synapse-service", "packages-install", "nginx-sites"]) {
            assert.equal(hostOf(r, n), "203.0.113.10", n);
        }
        // The Synapse host gets PostgreSQL's client tools only.
        const pkgs = String(byName(r, "packages-install").inputs.create);
        assert.match(pkgs, /postgresql-client/);
        assert.doesNotMatch(pkgs, /\bpostgresql\b(?!-client)/);
    });

    it("opens 5432 to the Synapse host's address alone, before PostgreSQL listens beyond loopback", async () => {
        const r = await run;
        const rules = String(byName(r, "database-firewall-rules").inputs.content);
        assert.match(rules, /ip saddr 203\.0\.113\.10 tcp dport 5432 accept/);
        assert.match(rules, /tcp dport \{ 22 \} accept/);
        const network = String(byName(r, "postgres-network").inputs.create);
        assert.match(network, /hostssl "synapse" "synapse" 203\.0\.113\.10\/32 scram-sha-256/);
        assert.match(network, /listen_addresses = \W*localhost,203\.0\.113\.20\W/);
        assert.ok(
            byName(r, "postgres-install").dependencies.some((d) => d.endsWith("::database-firewall-apply")),
            "PostgreSQL's steps wait for the firewall",
        );
    });

    it("has Synapse connect to it with TLS, verifying the server against the CA made there", async () => {
        const r = await run;
        const secrets = parseYaml(allStrings(byName(r, "synapse-secrets-yaml").inputs.content)[0]!) as {
            database: { args: Record<string, unknown> };
        };
        assert.equal(secrets.database.args.host, DB);
        assert.equal(secrets.database.args.sslmode, "verify-full");
        assert.equal(secrets.database.args.sslrootcert, "/etc/matrix-synapse/database-ca.pem");
        const ca = byName(r, "synapse-database-ca");
        assert.equal(ca.inputs.path, "/etc/matrix-synapse/database-ca.pem");
        assert.ok(byName(r, "synapse-service").dependencies.some((d) => d.endsWith("::synapse-database-ca")));
    });
});

describe("SSH apart from the records' address (matrix:machine.sshHost), and the DNS check", () => {
    const ZONE_ID = "0123456789abcdef0123456789abcdef";
    const natted = (ipv4: string) => baseConfig({ "matrix:machine": { ipv4, sshHost: "192.168.1.10" } });
    const runs = {
        home: runProgramSoon(natted("203.0.113.10")),
        moved: runProgramSoon(natted("203.0.113.77")),
        stranger: runProgramSoon(baseConfig(), {
            cloudflare: {
                [`zones/${ZONE_ID}/dns_records?name=element.example.org&per_page=100`]: {
                    status: 200,
                    body: {
                        success: true,
                        errors: [],
                        result: [{ id: "f".repeat(32), type: "CNAME", content: "old.example.net", comment: null }],
                    },
                },
            },
        }),
        badToken: runProgramSoon(baseConfig(), {
            cloudflare: {
                [`zones/${ZONE_ID}`]: {
                    status: 403,
                    body: { success: false, errors: [{ code: 10000, message: "Authentication error" }] },
                },
            },
        }),
    };
    const inputsByName = (r: ProgramResult) =>
        new Map(r.resources.filter((x) => x.custom).map((x) => [x.name, JSON.stringify(x.inputs)]));

    it("connects every step to sshHost; the records and what calls advertise keep ipv4", async () => {
        const r = await runs.home;
        assert.equal(r.error, undefined);
        const commands = r.resources.filter((x) => x.type === COMMAND);
        assert.ok(commands.length > 10);
        for (const c of commands) {
            assert.equal((c.inputs.connection as { value: { host: string } }).value.host, "192.168.1.10", c.name);
        }
        assert.equal(byName(r, "dns-homeserver-a").inputs.content, "203.0.113.10");
        assert.match(String(r.outputs.firstAdminCommand!.value), / root@192\.168\.1\.10 /);
    });

    it("a new ipv4 with the same sshHost changes the A records' inputs and nothing else", async () => {
        const [before, after] = [inputsByName(await runs.home), inputsByName(await runs.moved)];
        assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort());
        assert.deepEqual(
            [...after]
                .filter(([name, inputs]) => before.get(name) !== inputs)
                .map(([name]) => name)
                .sort(),
            ["dns-apex-a", "dns-element-a", "dns-homeserver-a"],
        );
    });

    it("ManagedFile's refresh and delete reach sshHost too (the stack's current config)", () => {
        const c = connectionFromConfig(
            {
                get: (key: string) =>
                    ({
                        "matrix:machine": JSON.stringify({
                            ipv4: "203.0.113.10",
                            sshHost: "192.168.1.10",
                            sshPort: 2222,
                        }),
                        "matrix:sshPrivateKey": "KEY",
                    })[key],
            } as never,
            { machine: "matrix:machine", privateKey: "matrix:sshPrivateKey" },
        );
        assert.deepEqual([c?.host, c?.port], ["192.168.1.10", 2222]);
    });

    it("marks each record with the stack that owns it", async () => {
        const r = await runs.home;
        for (const rec of r.resources.filter((x) => x.type === RECORD)) {
            assert.equal(rec.inputs.comment, "managed by matrix-pulumi (stack matrix/test)", rec.name);
        }
    });

    it("refuses a stranger's record at one of the names before any resource is registered", async () => {
        const r = await runs.stranger;
        assert.match(
            r.error ?? "",
            /Cloudflare is not ready for this stack's records \(1 problem\); nothing was deployed:\n {2}- matrix:dns: element\.example\.org already has a CNAME record \(old\.example\.net, id f{32}\) that this stack did not create; delete it/,
        );
        assert.deepEqual(
            r.resources.filter((x) => x.custom),
            [],
        );
    });

    it("refuses a token Cloudflare refuses, naming cloudflare:apiToken", async () => {
        const r = await runs.badToken;
        assert.match(
            r.error ?? "",
            /- cloudflare:apiToken: Cloudflare refused the token for zone 0123456789abcdef0123456789abcdef \(10000 Authentication error\)/,
        );
        assert.deepEqual(
            r.resources.filter((x) => x.custom),
            [],
        );
    });
});

describe("Matrix Authentication Service (matrix:auth)", () => {
    const mas = { version: "1.22.0", sha256: "c".repeat(64) };
    const off = runProgramSoon(baseConfig({ "matrix:users": [{ name: "alice", admin: true }] }));
    const on = runProgramSoon(baseConfig({ "matrix:auth": { mas }, "matrix:users": [{ name: "alice", admin: true }] }));

    it("adds MAS's own resources and changes only Synapse's files and restart, the vhost and the accounts' step", async () => {
        const [a, b] = [await off, await on];
        assert.equal(b.error, undefined);
        const before = new Map(a.resources.map((x) => [x.urn, JSON.stringify(x.inputs)]));
        const changed = b.resources
            .filter((x) => before.has(x.urn) && before.get(x.urn) !== JSON.stringify(x.inputs))
            .map((x) => x.name)
            .sort();
        assert.deepEqual(changed, [
            "nginx-homeserver-vhost",
            "nginx-sites",
            "synapse-homeserver-yaml",
            "synapse-secrets-yaml",
            "synapse-service",
            "users-alice",
        ]);
        const added = b.resources.filter((x) => !before.has(x.urn)).map((x) => x.name);
        assert.ok(added.length > 0 && added.every((n) => n.startsWith("auth")), added.join());
    });

    it("orders MAS before Synapse's files and the accounts (syn2mas reads Synapse as it was), nginx after it", async () => {
        const r = await on;
        for (const later of ["synapse-homeserver-yaml", "synapse-secrets-yaml", "synapse-service", "users-alice"]) {
            assert.ok(dependsOn(r, later, "auth-service"), later);
        }
        assert.ok(dependsOn(r, "nginx-homeserver-vhost", "auth-service"));
        assert.ok(dependsOn(r, "auth-service", "auth-postgres-database"));
    });

    it("restarts Synapse when MAS's config changes: Synapse serves MAS's discovery document as read at its start", async () => {
        // Started here, not when the file loads: queued after the runs the tests before this one await.
        const open = runProgramSoon(
            baseConfig({
                "matrix:auth": { mas },
                "matrix:users": [{ name: "alice", admin: true }],
                "matrix:synapse": { enableRegistration: true },
            }),
        );
        const [a, b] = [await on, await open];
        assert.equal(b.error, undefined);
        const step = (r: typeof a, name: string) => String(byName(r, name).inputs.create);
        assert.notEqual(byName(a, "auth-config-yaml").inputs.sha256, byName(b, "auth-config-yaml").inputs.sha256);
        // Synapse's own files stay as they were (registration is MAS's); its restart step changes.
        for (const f of ["synapse-homeserver-yaml", "synapse-secrets-yaml"]) {
            assert.equal(byName(a, f).inputs.sha256, byName(b, f).inputs.sha256, f);
        }
        assert.notEqual(step(a, "synapse-service"), step(b, "synapse-service"));
    });

    it("sends the compatibility routes to MAS before Synapse's location, and /auth/ to MAS", async () => {
        const vhost = String(byName(await on, "nginx-homeserver-vhost").inputs.content);
        const compat = vhost.indexOf("location ~ ^/_matrix/client/[^/]+/(login|logout|refresh)(/|$)");
        const synapse = vhost.indexOf("location ~ ^(/_matrix|/_synapse/client)");
        assert.ok(compat > 0 && compat < synapse, vhost);
        assert.match(vhost, /proxy_pass http:\/\/127\.0\.0\.1:8090\/auth\$request_uri;/);
        assert.match(vhost, /location \^~ \/auth\/ \{\s*proxy_pass http:\/\/127\.0\.0\.1:8090;/);
    });

    it("gives Synapse the shared secret in secrets.yaml only, the same one MAS's file holds", async () => {
        const r = await on;
        const secrets = parseYaml(unwrap(byName(r, "synapse-secrets-yaml").inputs.content) as string) as {
            matrix_authentication_service: { enabled: boolean; endpoint: string; secret: string };
        };
        const masFile = unwrap(byName(r, "auth-synapse-shared-secret-file").inputs.content);
        assert.equal(secrets.matrix_authentication_service.secret, masFile);
        assert.equal(secrets.matrix_authentication_service.endpoint, "http://127.0.0.1:8090/auth/");
        assert.doesNotMatch(String(byName(r, "synapse-homeserver-yaml").inputs.content), new RegExp(String(masFile)));
        assert.doesNotMatch(String(byName(r, "auth-config-yaml").inputs.content), new RegExp(String(masFile)));
    });
});
