// What the end-to-end suites share: a session that boots the real host (systemd-nspawn), pebble,
// challtestsrv and the artifact server; the stack config they deploy; the acting engine run in a
// process of its own; an HTTP client that resolves through the program's DNS and trusts pebble;
// a Matrix client; and the checks every phase repeats.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { Resolver } from "node:dns/promises";
import { mkdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import { it } from "@jest/globals";
import { Agent, fetch, type RequestInit } from "undici";
import type { EngineRequest, EngineResult } from "./engine";
import { DEFAULT_SYNAPSE_VERSION } from "../../config";
import type { SshTarget } from "../../lib/registerUser";
import {
    buildWheelhouse,
    hostDown,
    hostUp,
    keyValues,
    onHost,
    serveArtifacts,
    startAcme,
    type Acme,
    type Artifacts,
    type Host,
} from "./infra";

const ROOT = path.resolve(__dirname, "../..");
export const MANAGED_FILE = "pulumi-nodejs:dynamic/matrix:ManagedFile";
export const COMMAND = "command:remote:Command";
export const CACHE = process.env.E2E_CACHE ?? path.join(ROOT, ".cache/e2e");
const SYNAPSE_VENV = process.env.SYNAPSE_VENV ?? path.join(ROOT, ".cache/synapse-venv");
export const DOMAIN = "matrix-e2e.test";
export const HS = `matrix.${DOMAIN}`;
export const EL = `element.${DOMAIN}`;
const ELEMENT_VERSION = "1.12.29";
/** A second release, for changing element.version. */
export const NEXT_ELEMENT_VERSION = "1.12.31";
// The first deploy installs an older Synapse; a later phase upgrades to the program's default.
export const OLD_SYNAPSE = "1.162.0";
export const NEW_SYNAPSE = DEFAULT_SYNAPSE_VERSION;
export const timings: [string, number][] = [];
export async function timed<T>(label: string, fn: () => Promise<T> | T): Promise<T> {
    const start = Date.now();
    try {
        return await fn();
    } finally {
        timings.push([label, (Date.now() - start) / 1000]);
    }
}

/** The running session: set by startSession. */
export const ctx = {} as { run: string; host: Host; acme: Acme; artifacts: Artifacts; http: Agent; statePath: string };

/** A shell command on the host as root (checks, not deployment). */
export const sh = (command: string, input?: string) => onHost(ctx.host, command, input);

/**
 * Boot a fresh host from the cached rootfs, start pebble, challtestsrv and the artifact server.
 * `run` is the session's folder (state file, keys, logs); it starts empty.
 */
export async function startSession(run: string): Promise<void> {
    rmSync(run, { recursive: true, force: true });
    mkdirSync(run, { recursive: true });
    ctx.run = run;
    ctx.statePath = path.join(run, "state.json");
    await timed("rootfs (debootstrap or cache)", () => {
        const r = spawnSync("bash", [path.join(__dirname, "host.sh"), "rootfs"], { stdio: "inherit" });
        assert.equal(r.status, 0);
    });
    ctx.host = await timed("boot host", () => hostUp(run));
    ctx.acme = await timed("start pebble + challtestsrv", () => startAcme(path.join(run, "acme"), ctx.host.hostIp));
    const wheels = await timed("wheelhouse (pip wheel or cache)", () =>
        buildWheelhouse(CACHE, SYNAPSE_VENV, [OLD_SYNAPSE, NEW_SYNAPSE]),
    );
    ctx.artifacts = await serveArtifacts(
        path.join(run, "artifacts"),
        ctx.host.hostIp,
        [ELEMENT_VERSION, NEXT_ELEMENT_VERSION],
        wheels,
    );
    ctx.http = client();
}

/** Stop everything, print the phase durations, and fail if anything outlived the session. */
export async function stopSession(): Promise<void> {
    await ctx.artifacts?.stop();
    ctx.acme?.stop();
    if (ctx.run) hostDown(ctx.run);
    console.log("\nphase durations:");
    for (const [label, s] of timings) console.log(`  ${label.padEnd(40)} ${s.toFixed(1)} s`);
    // Nothing may outlive the run: no container, no link, no NAT rule, no pebble.
    await new Promise((r) => setTimeout(r, 500));
    const leftovers = [
        spawnSync("ip", ["link", "show", "ve-matrix-e2e"]).status === 0 ? "link ve-matrix-e2e" : "",
        /10\.231\.0\.0\/30/.test(spawnSync("iptables", ["-t", "nat", "-S", "POSTROUTING"], { encoding: "utf8" }).stdout)
            ? "NAT rule"
            : "",
        spawnSync("pgrep", ["-f", "systemd-nspawn .*-M matrix-e2e"]).status === 0 ? "systemd-nspawn" : "",
        spawnSync("pgrep", ["-x", "pebble"]).status === 0 ? "pebble" : "",
        spawnSync("pgrep", ["-x", "pebble-challtestsrv"]).status === 0 ? "pebble-challtestsrv" : "",
    ].filter(Boolean);
    assert.deepEqual(leftovers, [], `left behind: ${leftovers.join(", ")}`);
}

export function stackConfig(
    overrides: {
        synapse?: Record<string, unknown>;
        element?: Record<string, unknown>;
        purgeOnDestroy?: boolean;
        users?: unknown[];
        backup?: Record<string, unknown>;
        firewall?: Record<string, unknown>;
        acme?: Record<string, unknown>;
    } = {},
): Record<string, string> {
    const { host, acme, artifacts } = ctx;
    const values: Record<string, unknown> = {
        "matrix:domain": DOMAIN,
        "matrix:machine": { ipv4: host.guestIp, sshHostKey: host.hostKey },
        "matrix:sshPrivateKey": host.privateKey,
        "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef" },
        "cloudflare:apiToken": "e2e-token-never-used",
        "matrix:acme": {
            email: "admin@matrix-e2e.test",
            directoryUrl: acme.directoryUrl,
            caBundle: acme.listenerCa,
            ...overrides.acme,
        },
        "matrix:synapse": {
            healthTimeoutSeconds: 240,
            wheelhouse: artifacts.wheelhouse,
            version: OLD_SYNAPSE,
            ...overrides.synapse,
        },
        "matrix:element": { ...artifacts.element, ...overrides.element },
        ...(overrides.purgeOnDestroy ? { "matrix:purgeOnDestroy": "true" } : {}),
        ...(overrides.users ? { "matrix:users": overrides.users } : {}),
        ...(overrides.backup ? { "matrix:backup": overrides.backup } : {}),
        ...(overrides.firewall ? { "matrix:firewall": overrides.firewall } : {}),
    };
    return Object.fromEntries(
        Object.entries(values).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    );
}

/** Runs the engine in its own process; async, so this process keeps serving the artifacts. */
export function deploy(
    config: Record<string, string>,
    mode: EngineRequest["mode"] = "apply",
    opts: { refresh?: boolean } = {},
): Promise<EngineResult> {
    const request: EngineRequest = {
        config,
        secretKeys: ["matrix:sshPrivateKey", "cloudflare:apiToken"],
        statePath: ctx.statePath,
        mode,
        // Pulumi.yaml sets `refresh: always`: every run reads the managed files back first.
        refresh: opts.refresh ?? true,
        challtestsrv: ctx.acme.challtestsrv,
    };
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "engine.ts")], { cwd: ROOT });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(JSON.stringify(request));
    return new Promise((resolve, reject) => {
        child.on("close", (code) => {
            try {
                resolve(JSON.parse(stdout) as EngineResult);
            } catch {
                reject(new Error(`engine failed (exit ${code}): ${stderr}`));
            }
        });
    });
}

export function explainFailure(result: EngineResult): string {
    const failed = result.steps.filter((s) => s.action === "failed");
    const journal = sh("journalctl -u matrix-synapse -u nginx -u postgresql@15-main -n 40 --no-pager").stdout;
    return `${result.error}\nfailed steps:\n${failed.map((s) => `${s.name}: ${s.error}`).join("\n")}\njournal:\n${journal}`;
}

/** Wall time per component (steps run in parallel inside one). */
export function componentTimes(result: EngineResult): [string, number][] {
    const by = new Map<string, { start: number; end: number }>();
    for (const s of result.steps.filter((x) => x.action !== "same")) {
        const c = s.name.split("-")[0]!;
        const t = by.get(c) ?? { start: s.start, end: s.end };
        by.set(c, { start: Math.min(t.start, s.start), end: Math.max(t.end, s.end) });
    }
    return [...by].map(([c, t]) => [c, (t.end - t.start) / 1000]);
}

// HTTP as a user's client sees it: names from the DNS the program wrote, TLS trusted via pebble.
export const resolver = new Resolver();
function client(): Agent {
    resolver.setServers([ctx.acme.dnsServer]);
    return new Agent({
        connect: {
            ca: ctx.acme.issuingRoot,
            lookup: (hostname, _opts, cb) => {
                resolver.resolve4(hostname).then(
                    (addrs) => cb(null, [{ address: addrs[0]!, family: 4 }]),
                    (err: Error) => cb(err, []),
                );
            },
        },
    });
}
export const get = (url: string, init: RequestInit = {}) => fetch(url, { ...init, dispatcher: ctx.http });

/** The host as `npm run register-user` reaches it (lib/registerUser.ts): SSH with the pinned key. */
export const target = (): SshTarget => ({
    ipv4: ctx.host.guestIp,
    sshPort: 22,
    sshUser: "root",
    sshHostKey: ctx.host.hostKey,
    privateKey: ctx.host.privateKey,
});

/** The SDK logs every request at debug level; keep warnings and errors only. */
const quiet = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: (...m: unknown[]) => console.warn(...m),
    error: (...m: unknown[]) => console.error(...m),
    getChild: () => quiet,
};

export async function matrixClient(user: string, password: string) {
    const sdk = await import("matrix-js-sdk");
    const fetchFn = ((input: string, init?: RequestInit) =>
        get(String(input), init)) as unknown as typeof globalThis.fetch;
    const anon = sdk.createClient({ baseUrl: `https://${HS}`, fetchFn, logger: quiet });
    const login = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
    });
    return sdk.createClient({
        baseUrl: `https://${HS}`,
        fetchFn,
        logger: quiet,
        accessToken: login.access_token,
        userId: login.user_id,
        deviceId: login.device_id,
    });
}

export type MatrixClient = Awaited<ReturnType<typeof matrixClient>>;

export async function lastMessages(mx: MatrixClient, roomId: string): Promise<string[]> {
    const sdk = await import("matrix-js-sdk");
    const res = await mx.createMessagesRequest(roomId, null, 20, sdk.Direction.Backward);
    return res.chunk.filter((e) => e.type === "m.room.message").map((e) => String(e.content.body));
}

/** The deployed services' main PIDs, nginx's worker PIDs and how often nginx reloaded (a reload keeps its master). */
export function services(): {
    synapse: string;
    nginx: string;
    nginxWorkers: string;
    nginxReloads: number;
    postgres: string;
} {
    const out = sh(
        [
            'echo "synapse=$(systemctl show -p MainPID --value matrix-synapse)"',
            'nginx=$(systemctl show -p MainPID --value nginx); echo "nginx=$nginx"',
            'echo "nginxWorkers=$(pgrep -d, -P "$nginx")"',
            `echo "nginxReloads=$(journalctl -u nginx -o cat --no-pager | grep -c '^Reloaded')"`,
            'echo "postgres=$(systemctl show -p MainPID --value postgresql@15-main)"',
        ].join("; "),
    ).stdout;
    const v = keyValues(out);
    return {
        synapse: v.synapse!,
        nginx: v.nginx!,
        nginxWorkers: v.nginxWorkers!,
        nginxReloads: Number(v.nginxReloads),
        postgres: v.postgres!,
    };
}

/** The Synapse release that answers federation through nginx. */
export async function servedSynapseVersion(): Promise<string> {
    const fed = (await (await get(`https://${HS}/_matrix/federation/v1/version`)).json()) as {
        server: { version: string };
    };
    return fed.server.version;
}

/** Whether `user` logs in with `password` and still finds `message` in `roomId`. */
export async function seesMessage(user: string, password: string, roomId: string, message: string): Promise<boolean> {
    const mx = await matrixClient(user, password);
    return (await lastMessages(mx, roomId)).includes(message);
}

export function hostChecks(): void {
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
        const lines = sh("ss -Hltn").stdout.trim().split("\n");
        const local = (port: number) => lines.map((l) => l.split(/\s+/)[3] ?? "").filter((a) => a.endsWith(`:${port}`));
        assert.deepEqual(local(8008), ["127.0.0.1:8008"]);
        assert.ok(local(5432).length > 0);
        for (const a of local(5432)) assert.match(a, /^(127\.0\.0\.1|\[::1\]):5432$/);
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
