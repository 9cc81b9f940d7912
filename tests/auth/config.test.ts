// The rendered MAS config in the real mas-cli of the release tarball `npm run tools:mas` built (the
// one the host suites serve): `config check` reads it from the paths the host uses (a private mount
// namespace over /etc/matrix-authentication-service and /opt/matrix-authentication-service), with
// secrets made as the program makes them on the host. Needs root.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { parse, stringify } from "yaml";
import { masReleaseDir, MAS_PATHS, renderMasConfig, type MasSettings } from "../../render/mas";
import { run } from "../render/tools";
import { awaitMasBuild } from "../../lab/artifacts";

const tarball = path.join(
    process.env.PULUMI_TOOLS ?? path.resolve(__dirname, "../../.tools/pulumi"),
    "mas",
    "mas-cli-x86_64-linux.tar.gz",
);
const release = { version: "1.22.0", sha256: "0123456789abcdef".repeat(4) };
const settings: MasSettings = {
    serverName: "example.org",
    homeserverHost: "matrix.example.org",
    release,
    database: { host: "127.0.0.1", port: 5432, name: "matrix_auth", user: "matrix_auth" },
    registration: false,
    registrationTokenRequired: false,
};

describe("MAS's rendered config in the real mas-cli", () => {
    let dir: string;
    let etc: string;
    let opt: string;
    const made: string[] = [];
    beforeAll(async () => {
        await awaitMasBuild();
        assert.ok(existsSync(tarball), `no MAS tarball at ${tarball}: run npm run tools:mas`);
        dir = mkdtempSync(path.join(tmpdir(), "matrix-mas-"));
        etc = path.join(dir, "etc");
        opt = path.join(dir, "opt");
        const unpacked = path.join(opt, path.basename(masReleaseDir(release)));
        mkdirSync(path.join(etc, "secrets", "keys"), { recursive: true });
        mkdirSync(unpacked, { recursive: true });
        assert.equal(run("tar", ["-xzf", tarball, "-C", unpacked]).status, 0);
        // The secrets, made as renderMasDirsScript makes them on the host (openssl), and as the stack gives them.
        const secrets = path.join(etc, "secrets");
        const sh = (cmd: string) => assert.equal(run("bash", ["-c", cmd]).status, 0, cmd);
        sh(`openssl rand -hex 32 > ${secrets}/encryption`);
        sh(`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ${secrets}/keys/rsa.pem`);
        sh(`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${secrets}/keys/ec-p256.pem`);
        for (const f of ["database-password", "synapse-shared-secret", "admin-client-secret"]) {
            writeFileSync(path.join(secrets, f), "x".repeat(64));
        }
        for (const d of [MAS_PATHS.etc, MAS_PATHS.releases]) {
            if (!existsSync(d)) {
                mkdirSync(d, { recursive: true });
                made.push(d);
            }
        }
    });
    afterAll(() => {
        for (const d of made) rmSync(d, { recursive: true, force: true });
        rmSync(dir, { recursive: true, force: true });
    });

    /** `mas-cli config check` (or `config dump`) of `config`, with the host's paths mounted over. */
    function mas(config: string, sub = "check") {
        writeFileSync(path.join(etc, "config.yaml"), config);
        const bin = `${masReleaseDir(release)}/mas-cli`;
        return run("unshare", [
            "--mount",
            "bash",
            "-c",
            `mount --bind ${etc} ${MAS_PATHS.etc} && mount --bind ${opt} ${MAS_PATHS.releases} && cd / && ${bin} config ${sub} --config ${MAS_PATHS.config}`,
        ]);
    }

    it("accepts the config, its secrets read from their files and the keys from their folder", () => {
        const r = mas(renderMasConfig(settings));
        assert.equal(r.status, 0, r.stdout + r.stderr);
    });

    it("reads it as meant: served under /auth/ on the homeserver host, Synapse on loopback, bcrypt first for syn2mas", () => {
        const r = mas(renderMasConfig({ ...settings, registration: true, registrationTokenRequired: true }), "dump");
        assert.equal(r.status, 0, r.stderr);
        const c = parse(r.stdout) as {
            http: { public_base: string; listeners: { name: string; prefix?: string; binds: unknown[] }[] };
            matrix: { homeserver: string; endpoint: string };
            passwords: { schemes: { version: number; algorithm: string }[] };
            account: Record<string, boolean>;
            secrets: { keys_dir: string; encryption_file: string };
        };
        assert.equal(c.http.public_base, "https://matrix.example.org/auth/");
        assert.deepEqual(
            c.http.listeners.map((l) => [l.name, l.prefix ?? null, l.binds]),
            [
                ["web", "/auth", [{ host: "127.0.0.1", port: 8090 }]],
                ["internal", null, [{ host: "127.0.0.1", port: 8091 }]],
            ],
        );
        assert.deepEqual([c.matrix.homeserver, c.matrix.endpoint], ["example.org", "http://127.0.0.1:8008/"]);
        assert.deepEqual(
            c.passwords.schemes.map((s) => [s.version, s.algorithm]),
            [
                [1, "bcrypt"],
                [2, "argon2id"],
            ],
        );
        assert.equal(c.account.password_registration_enabled, true);
        assert.equal(c.account.password_registration_token_required, true);
        // Every secret is a file: the keys' folder and the encryption key made on the host.
        assert.deepEqual([c.secrets.keys_dir, c.secrets.encryption_file], [MAS_PATHS.keys, MAS_PATHS.encryption]);
        assert.doesNotMatch(r.stdout, /x{64}/);
    });

    it("is refused with a hashing scheme it does not know (so the check above can fail)", () => {
        const config = parse(renderMasConfig(settings)) as { passwords: { schemes: { algorithm: string }[] } };
        config.passwords.schemes[0]!.algorithm = "md5";
        const r = mas(stringify(config));
        assert.notEqual(r.status, 0, r.stdout);
        assert.match(r.stderr + r.stdout, /md5/);
    });
});
