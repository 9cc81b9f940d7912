// homeserver.yaml + secrets.yaml + log.yaml, loaded by real Synapse's own config loader from the
// paths the host uses (a private mount namespace; needs root and the venv .ci/run builds).
import assert from "node:assert/strict";
import { turnUris } from "../../render/turn";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, it } from "@jest/globals";
import { parse } from "yaml";
import {
    SYNAPSE_PATHS,
    renderHomeserverConfig,
    renderLogConfig,
    renderSecretsConfig,
    type HomeserverSettings,
} from "../../render/synapse";
import { renderWorkerConfig, WORKER_PRESETS, workerList } from "../../render/workers";
import { SYNAPSE_METRICS_LISTENER, workerMetricsPort } from "../../render/monitoring";
import { allStrings, baseConfig, runProgram } from "../harness/run";
import { run } from "./tools";

const venv = path.resolve(process.env.SYNAPSE_VENV ?? path.join(__dirname, "../../.cache/synapse-venv"));
const secrets = {
    registrationSharedSecret: "regSecret0123456789",
    macaroonSecretKey: "macaroon0123456789",
    formSecret: "form0123456789",
    database: { name: "synapse", user: "synapse", password: "dbPassword0123456789", host: "127.0.0.1", port: 5432 },
};
const base: HomeserverSettings = {
    serverName: "example.org",
    homeserverHost: "matrix.example.org",
    enableRegistration: false,
    maxUploadSize: "50M",
    reportStats: false,
    extraConfig: {},
};

/** Load the files in Synapse; returns its verdict and, when it parses, what it understood. */
function load(
    homeserverYaml: string,
    secretsYaml = renderSecretsConfig(secrets),
    federationCa?: string,
): { verdict: string; probe?: Record<string, unknown> } {
    const dir = mkdtempSync(path.join(tmpdir(), "matrix-synapse-"));
    writeFileSync(path.join(dir, "homeserver.yaml"), homeserverYaml);
    writeFileSync(path.join(dir, "secrets.yaml"), secretsYaml);
    if (federationCa) writeFileSync(path.join(dir, path.basename(SYNAPSE_PATHS.federationCa)), federationCa);
    writeFileSync(path.join(dir, "log.yaml"), renderLogConfig());
    const created = ["/etc/matrix-synapse", "/var/lib/matrix-synapse"].filter((d) => !existsSync(d));
    created.forEach((d) => mkdirSync(d, { recursive: true }));
    try {
        const res = run("unshare", ["--mount", "bash", path.join(__dirname, "synapse-harness.sh"), dir, venv]);
        assert.equal(res.status, 0, res.stderr + res.stdout.slice(-3000));
        const [verdict, probe] = res.stdout.split("=== probe\n");
        return { verdict: verdict!, probe: probe ? JSON.parse(probe) : undefined };
    } finally {
        created.forEach((d) => rmSync(d, { recursive: true, force: true }));
        rmSync(dir, { recursive: true, force: true });
    }
}

describe("Synapse's own config loader", () => {
    it("has the venv", () => assert.ok(existsSync(`${venv}/bin/python`), `no Synapse venv at ${venv} (SYNAPSE_VENV)`));

    it("accepts the rendered files and reads every setting and secret as meant", () => {
        const { verdict, probe } = load(renderHomeserverConfig(base));
        assert.match(verdict, /Config parses OK!/);
        assert.deepEqual(probe, {
            server_name: "example.org",
            public_baseurl: "https://matrix.example.org/",
            enable_registration: false,
            max_upload_size: 50 * 1024 * 1024,
            report_stats: false,
            registration_shared_secret: secrets.registrationSharedSecret,
            macaroon_secret_key: secrets.macaroonSecretKey,
            form_secret: secrets.formSecret,
            database: {
                name: "psycopg2",
                args: {
                    user: "synapse",
                    password: secrets.database.password,
                    dbname: "synapse",
                    host: "127.0.0.1",
                    port: 5432,
                    cp_min: 5,
                    cp_max: 10,
                },
            },
            bind_addresses: ["127.0.0.1"],
            port: 8008,
            x_forwarded: true,
            resources: ["client", "federation"],
            signing_keys: 1,
            media_store_path: "/var/lib/matrix-synapse/media_store",
            allow_public_rooms_over_federation: false,
            federation_domain_whitelist: [],
            federation_custom_ca: false,
            ip_range_whitelist: [],
            trusted_key_servers: ["matrix.org"],
            // Without matrix:synapse.mediaRetention Synapse keeps all media (the config's
            // defaults are another matter: see the next test).
            media_retention_ms: { local: null, remote: null },
            enable_metrics: false,
            metrics_listeners: [],
            // No matrix:rtc or matrix:turn: Synapse's defaults.
            calls: {
                msc4143: false,
                msc3026: false,
                msc4222: false,
                transports: [],
                delayed_events: false,
                max_event_delay_ms: 0,
                rc_message: [0.2, 10],
                rc_delayed_event_mgmt: [1, 5],
                turn_uris: [],
                turn_shared_secret: null,
                turn_user_lifetime_ms: 3600_000,
                turn_allow_guests: true,
            },
        });
    });

    it("reads MatrixRTC and TURN as Element Call's self-hosting guide asks (the TURN secret from secrets.yaml)", () => {
        const serviceUrl = "https://matrix.example.org/livekit/jwt";
        const uris = turnUris({ realm: "matrix.example.org", port: 3478, tlsPort: 5349 });
        const { verdict, probe } = load(
            renderHomeserverConfig({
                ...base,
                extraConfig: { experimental_features: { msc3026_enabled: true } },
                rtc: { serviceUrl },
                turn: { uris, userLifetime: "2h" },
            }),
            renderSecretsConfig({ ...secrets, turnSharedSecret: "turnSecret0123456789" }),
        );
        assert.match(verdict, /Config parses OK!/);
        assert.deepEqual(probe?.calls, {
            msc4143: true,
            msc3026: true,
            msc4222: true,
            transports: [{ type: "livekit", livekit_service_url: serviceUrl }],
            delayed_events: true,
            max_event_delay_ms: 24 * 3600_000,
            rc_message: [0.5, 30],
            rc_delayed_event_mgmt: [1, 20],
            turn_uris: [
                "turn:matrix.example.org:3478?transport=udp",
                "turn:matrix.example.org:3478?transport=tcp",
                "turns:matrix.example.org:5349?transport=tcp",
            ],
            turn_shared_secret: "turnSecret0123456789",
            turn_user_lifetime_ms: 2 * 3600_000,
            turn_allow_guests: false,
        });
        // The stack's own limits win over the guide's.
        const own = load(
            renderHomeserverConfig({
                ...base,
                extraConfig: { rc_message: { per_second: 2, burst_count: 50 } },
                rtc: { serviceUrl },
            }),
        );
        assert.deepEqual((own.probe?.calls as { rc_message: number[] }).rc_message, [2, 50]);
    });

    it("hands logins to MAS with matrix:auth: its endpoint and shared secret (from secrets.yaml), no password login, QR login on", () => {
        const { verdict, probe } = load(
            renderHomeserverConfig({
                ...base,
                enableRegistration: true,
                auth: true,
                rtc: { serviceUrl: "https://matrix.example.org/livekit/jwt" },
            }),
            renderSecretsConfig({ ...secrets, masSharedSecret: "masSecret0123456789" }),
        );
        assert.match(verdict, /Config parses OK!/);
        assert.deepEqual(probe?.auth, {
            mas: true,
            endpoint: "http://127.0.0.1:8090/auth/",
            secret: "masSecret0123456789",
            password_login: false,
            msc4108: true,
        });
        // Registration is MAS's then; calls' experimental features stay beside QR login.
        assert.equal(probe?.enable_registration, false);
        assert.equal((probe?.calls as { msc4143: boolean }).msc4143, true);
        // MAS's block lives in secrets.yaml (with its secret): without it there, Synapse refuses the QR
        // login that needs MAS (so the check above can fail).
        const own = load(renderHomeserverConfig({ ...base, auth: true }), renderSecretsConfig(secrets));
        assert.match(own.verdict, /MSC4108 requires matrix_authentication_service to be enabled[\s\S]*exit 1/);
    });

    it("reads the media lifetimes: remote media purged after 90 days, local media kept", () => {
        const { verdict, probe } = load(
            renderHomeserverConfig({ ...base, mediaRetention: { local: "forever", remote: "90d" } }),
        );
        assert.match(verdict, /Config parses OK!/);
        assert.deepEqual(probe?.media_retention_ms, { local: null, remote: 90 * 86400 * 1000 });
        const both = load(renderHomeserverConfig({ ...base, mediaRetention: { local: "1y", remote: "2w" } }));
        assert.deepEqual(both.probe?.media_retention_ms, { local: 365 * 86400 * 1000, remote: 14 * 86400 * 1000 });
    });

    it("serves metrics on loopback only when monitoring asks (and workers each on their own port)", () => {
        const { verdict, probe } = load(
            renderHomeserverConfig({ ...base, metricsListener: { ...SYNAPSE_METRICS_LISTENER } }),
        );
        assert.match(verdict, /Config parses OK!/);
        assert.equal(probe?.enable_metrics, true);
        assert.deepEqual(probe?.metrics_listeners, [[9000, ["127.0.0.1"]]]);
        const workers = workerList(WORKER_PRESETS.small);
        const ports = workers.map((w) => workerMetricsPort(workers, w.name));
        // No two listeners of any process share a port.
        const all = [9000, 8008, ...ports, ...workers.flatMap((w) => (w.port ? [w.port] : []))];
        assert.equal(new Set(all).size, all.length, all.join(" "));
        for (const w of workers) {
            const yaml = parse(renderWorkerConfig(w, { metricsPort: workerMetricsPort(workers, w.name) })) as {
                worker_listeners: { type: string; port: number; bind_addresses: string[] }[];
            };
            const metrics = yaml.worker_listeners.filter((l) => l.type === "metrics");
            assert.deepEqual(metrics, [
                { type: "metrics", port: workerMetricsPort(workers, w.name), bind_addresses: ["127.0.0.1"] },
            ]);
        }
    });

    it("reads a closed federation: only the stack's CA, its servers and private ranges, no matrix.org", () => {
        const ca = run("openssl", [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=federation CA",
            "-days",
            "1",
        ]);
        assert.equal(ca.status, 0, ca.stderr);
        const { verdict, probe } = load(
            renderHomeserverConfig({
                ...base,
                federation: { customCa: true, allowedServers: ["b.example.net"], allowedIpRanges: ["10.0.0.0/8"] },
            }),
            renderSecretsConfig(secrets),
            ca.stdout,
        );
        assert.match(verdict, /Config parses OK!/);
        assert.equal(probe?.federation_custom_ca, true);
        assert.deepEqual(probe?.federation_domain_whitelist, ["b.example.net"]);
        // Synapse adds the range's IPv6-mapped forms.
        assert.ok((probe?.ip_range_whitelist as string[]).includes("10.0.0.0/8"), String(probe?.ip_range_whitelist));
        assert.deepEqual(probe?.trusted_key_servers, []);
    });

    it("accepts the shared config of the small workers (Redis on its socket, replication listener, duties)", () => {
        const { verdict } = load(renderHomeserverConfig({ ...base, workers: WORKER_PRESETS.small }));
        assert.match(verdict, /Config parses OK!/);
    });

    it("accepts open registration (the renderer adds the flag Synapse demands)", () => {
        const { verdict, probe } = load(renderHomeserverConfig({ ...base, enableRegistration: true }));
        assert.match(verdict, /Config parses OK!/);
        assert.equal(probe?.enable_registration, true);
    });

    it("would be refused by Synapse without that flag (so the check above can fail)", () => {
        const yaml = parse(renderHomeserverConfig({ ...base, enableRegistration: true })) as Record<string, unknown>;
        delete yaml.enable_registration_without_verification;
        const { verdict } = load(JSON.stringify(yaml));
        assert.match(verdict, /enable_registration_without_verification[\s\S]*exit 1/);
    });

    it("merges extraConfig keys and a smaller upload limit", () => {
        const { probe } = load(
            renderHomeserverConfig({
                ...base,
                maxUploadSize: "512K",
                extraConfig: { allow_public_rooms_over_federation: true },
            }),
        );
        assert.equal(probe?.allow_public_rooms_over_federation, true);
        assert.equal(probe?.max_upload_size, 512 * 1024);
    });

    it("renders homeserver.yaml byte-identical for equal settings", () => {
        const text = renderHomeserverConfig({ ...base, extraConfig: { b: 1, a: { z: 1, y: 2 } } });
        assert.equal(text, renderHomeserverConfig({ ...base, extraConfig: { a: { y: 2, z: 1 }, b: 1 } }));
    });
});

describe("where the secrets go, in everything the program renders", () => {
    // A stack that brings every secret as a known string, so each can be searched for.
    const brought = {
        registrationSharedSecret: "knownRegistrationSecret0123456789",
        macaroonSecretKey: "knownMacaroonKey0123456789",
        formSecret: "knownFormSecret0123456789",
        databasePassword: "knownDatabasePassword0123456789",
    };
    const program = runProgram(
        baseConfig({
            "matrix:secrets": brought,
            "matrix:users": [{ name: "alice", admin: true }],
            // With workers, so their files, Redis' and the routes are searched too.
            "matrix:synapse": { workers: "small" },
        }),
    );
    const FILE = "pulumi-nodejs:dynamic/matrix:ManagedFile";
    const files = new Map(
        program.resources
            .filter((r) => r.type === FILE)
            .map((r) => [allStrings(r.inputs.path)[0]!, { content: allStrings(r.inputs.content)[0]!, r }]),
    );
    const scripts = program.resources
        .filter((r) => r.type === "command:remote:Command")
        .flatMap((r) => [r.inputs.create, r.inputs.delete].map((v) => [r.name, allStrings(v).join("")] as const));
    const found = (text: string) =>
        Object.entries(brought)
            .filter(([, v]) => text.includes(v))
            .map(([k]) => k);

    it("rendered every file a service reads, and every script", () => {
        assert.equal(program.error, undefined);
        // The nine of one process, nginx's routes, Redis' three, the worker unit and six workers.
        assert.equal(files.size, 20);
        assert.ok(scripts.length >= 20);
    });

    it("puts Synapse's three secrets and the database password in secrets.yaml, and Synapse reads them there", () => {
        const secretsYaml = files.get("/etc/matrix-synapse/secrets.yaml")!;
        assert.deepEqual(found(secretsYaml.content).sort(), Object.keys(brought).sort());
        assert.deepEqual(
            [secretsYaml.r.inputs.mode, secretsYaml.r.inputs.owner, secretsYaml.r.inputs.group],
            ["0640", "root", "matrix-synapse"],
        );
        const { probe } = load(files.get("/etc/matrix-synapse/homeserver.yaml")!.content, secretsYaml.content);
        assert.equal(probe?.registration_shared_secret, brought.registrationSharedSecret);
        assert.equal(probe?.macaroon_secret_key, brought.macaroonSecretKey);
        assert.equal(probe?.form_secret, brought.formSecret);
    });

    it("puts none of them in any other file (homeserver.yaml, log config, unit, vhosts, config.json, firewall)", () => {
        const leaks = [...files]
            .filter(([path]) => path !== "/etc/matrix-synapse/secrets.yaml")
            .flatMap(([path, f]) => found(f.content).map((k) => `${path}: ${k}`));
        assert.deepEqual(leaks, []);
    });

    it("puts none of them in any script (create or delete: both are visible in the process list)", () => {
        const leaks = scripts.flatMap(([name, text]) => found(text).map((k) => `${name}: ${k}`));
        assert.deepEqual(leaks, []);
    });
});
