// homeserver.yaml + secrets.yaml + log.yaml, loaded by real Synapse's own config loader from the
// paths the host uses (a private mount namespace; needs root and the venv .ci/run builds).
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, it } from "@jest/globals";
import { parse } from "yaml";
import {
    renderHomeserverConfig,
    renderLogConfig,
    renderSecretsConfig,
    type HomeserverSettings,
} from "../../render/synapse";
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
function load(homeserverYaml: string): { verdict: string; probe?: Record<string, unknown> } {
    const dir = mkdtempSync(path.join(tmpdir(), "matrix-synapse-"));
    writeFileSync(path.join(dir, "homeserver.yaml"), homeserverYaml);
    writeFileSync(path.join(dir, "secrets.yaml"), renderSecretsConfig(secrets));
    writeFileSync(path.join(dir, "log.yaml"), renderLogConfig());
    const created = ["/etc/matrix-synapse", "/var/lib/matrix-synapse"].filter((d) => !existsSync(d));
    created.forEach((d) => mkdirSync(d, { recursive: true }));
    try {
        const res = run("unshare", ["--mount", "bash", path.join(__dirname, "synapse-harness.sh"), dir, venv]);
        assert.equal(res.status, 0, res.stderr);
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
        });
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

    it("keeps homeserver.yaml free of secrets and byte-identical for equal settings", () => {
        const text = renderHomeserverConfig({ ...base, extraConfig: { b: 1, a: { z: 1, y: 2 } } });
        for (const s of [
            secrets.registrationSharedSecret,
            secrets.macaroonSecretKey,
            secrets.formSecret,
            secrets.database.password,
        ]) {
            assert.ok(!text.includes(s));
        }
        assert.equal(text, renderHomeserverConfig({ ...base, extraConfig: { a: { y: 2, z: 1 }, b: 1 } }));
    });
});
