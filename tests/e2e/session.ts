// What the end-to-end suites share: a session that boots the real host (systemd-nspawn), pebble,
// challtestsrv and the artifact server; a stack of the program deployed by the real Pulumi CLI
// (tests/e2e/pulumi.ts); an HTTP client that resolves through the test DNS and trusts pebble; a
// Matrix client; and helpers the phases repeat. No Jest here: the bench uses it too.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { Resolver } from "node:dns/promises";
import { mkdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import { Agent, fetch, type RequestInit } from "undici";
import { DEFAULT_SYNAPSE_VERSION } from "../../config";
import type { SshTarget } from "../../lib/registerUser";
import {
    buildWheelhouse,
    challtestsrv,
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
import { Stack, type Run } from "./pulumi";

const ROOT = path.resolve(__dirname, "../..");
export const MANAGED_FILE = "pulumi-nodejs:dynamic/matrix:ManagedFile";
export const COMMAND = "command:remote:Command";
export const CACHE = process.env.E2E_CACHE ?? path.join(ROOT, ".cache/e2e");
const SYNAPSE_VENV = process.env.SYNAPSE_VENV ?? path.join(ROOT, ".cache/synapse-venv");
export const DOMAIN = "matrix-e2e.test";
export const HS = `matrix.${DOMAIN}`;
export const EL = `element.${DOMAIN}`;
/** The Element releases the artifact server offers: a first, a next, and the next rebuilt. */
export const RELEASES = {
    first: { key: "first", version: "1.12.29" },
    next: { key: "next", version: "1.12.31" },
    rebuilt: { key: "rebuilt", version: "1.12.31", build: "rebuilt" },
} as const;
// The first deploy installs an older Synapse; a later phase upgrades to the program's default.
export const OLD_SYNAPSE = "1.162.0";
export const NEW_SYNAPSE = DEFAULT_SYNAPSE_VERSION;
export const timings: [string, number][] = [];
/** Runs a phase, printing its name and duration as it ends (the log shows progress). */
export async function timed<T>(label: string, fn: () => Promise<T> | T): Promise<T> {
    const start = Date.now();
    try {
        return await fn();
    } finally {
        const s = (Date.now() - start) / 1000;
        timings.push([label, s]);
        console.log(`» ${label}: ${s.toFixed(1)} s`);
    }
}

/** The running session: set by startSession. */
export const ctx = {} as { run: string; host: Host; acme: Acme; artifacts: Artifacts; http: Agent; stack: Stack };

/** A shell command on the host as root (checks, not deployment). */
export const sh = (command: string, input?: string) => onHost(ctx.host, command, input);

/**
 * Boot a fresh host from the cached rootfs, start pebble, challtestsrv and the artifact server,
 * and make a stack of the program. `run` is the session's folder (stack, keys, logs); it starts empty.
 */
export async function startSession(run: string): Promise<void> {
    rmSync(run, { recursive: true, force: true });
    mkdirSync(run, { recursive: true });
    ctx.run = run;
    await timed("rootfs (debootstrap or cache)", () => {
        const r = spawnSync("bash", [path.join(__dirname, "host.sh"), "rootfs"], { stdio: "inherit" });
        assert.equal(r.status, 0);
    });
    ctx.host = await timed("boot host", () => hostUp(run));
    ctx.acme = await timed("start pebble + challtestsrv", () => startAcme(path.join(run, "acme"), ctx.host.hostIp));
    const wheels = await timed("wheelhouse (pip wheel or cache)", () =>
        buildWheelhouse(CACHE, SYNAPSE_VENV, [OLD_SYNAPSE, NEW_SYNAPSE]),
    );
    ctx.artifacts = await serveArtifacts(path.join(run, "artifacts"), ctx.host.hostIp, Object.values(RELEASES), wheels);
    ctx.http = client();
    ctx.stack = new Stack(path.join(run, "pulumi"), "e2e");
    await timed("pulumi stack init", () => ctx.stack.init());
}

/** Stop everything, print the phase durations, and fail if anything outlived the session. */
export async function stopSession(): Promise<void> {
    await ctx.artifacts?.stop();
    ctx.acme?.stop();
    if (ctx.run) hostDown(ctx.run);
    console.log("\nphase durations:");
    for (const [label, s] of timings) console.log(`  ${label.padEnd(48)} ${s.toFixed(1)} s`);
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
        spawnSync("pgrep", ["-f", "pulumi-resource-"]).status === 0 ? "a Pulumi provider" : "",
    ].filter(Boolean);
    assert.deepEqual(leftovers, [], `left behind: ${leftovers.join(", ")}`);
}

/** Stack settings as a user keeps them: plain values (the stack file) and secrets. */
export interface StackSettings {
    plain: Record<string, unknown>;
    secrets: Record<string, string>;
}

export interface SettingsOverrides {
    synapse?: Record<string, unknown>;
    element?: Record<string, unknown>;
    purgeOnDestroy?: boolean;
    users?: unknown[];
    backup?: Record<string, unknown>;
    firewall?: Record<string, unknown>;
    acme?: Record<string, unknown>;
}

/**
 * The test stack: no matrix:dns (the test publishes dnsRecordsToCreate into the test DNS, as a
 * user with another DNS provider would), pebble as the ACME CA, Synapse from the wheelhouse.
 */
export function stackConfig(overrides: SettingsOverrides = {}, privateKey = ctx.host.privateKey): StackSettings {
    const { host, acme, artifacts } = ctx;
    return {
        plain: {
            "matrix:domain": DOMAIN,
            "matrix:machine": { ipv4: host.guestIp, sshHostKey: host.hostKey },
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
            ...(overrides.purgeOnDestroy ? { "matrix:purgeOnDestroy": true } : {}),
            ...(overrides.users ? { "matrix:users": overrides.users } : {}),
            ...(overrides.backup ? { "matrix:backup": overrides.backup } : {}),
            ...(overrides.firewall ? { "matrix:firewall": overrides.firewall } : {}),
        },
        secrets: { "matrix:sshPrivateKey": privateKey },
    };
}

/** The stack config as the program reads it (`namespace:key` → string), for register-user. */
export function rawConfig(settings: StackSettings): Record<string, string> {
    return Object.fromEntries(
        Object.entries({ ...settings.plain, ...settings.secrets }).map(([k, v]) => [
            k,
            typeof v === "string" ? v : JSON.stringify(v),
        ]),
    );
}

/** The records a run's `dnsRecordsToCreate` output lists, put into the test DNS ("name A address"). */
export async function publishDns(run: Run): Promise<string[]> {
    const records = (run.outputs.dnsRecordsToCreate ?? []) as string[];
    for (const record of records) {
        const [name, type, address] = record.split(" ");
        await challtestsrv(ctx.acme.challtestsrv, type === "AAAA" ? "add-aaaa" : "add-a", {
            host: `${name}.`,
            addresses: [address],
        });
    }
    return records;
}

/** `pulumi up` of these settings (written to the stack first). */
export async function deploy(
    settings: StackSettings,
    opts: { refresh?: boolean; replace?: string[] } = {},
): Promise<Run> {
    await ctx.stack.configure(settings.plain, settings.secrets);
    return ctx.stack.up(opts);
}

/** `pulumi preview` of these settings (written to the stack first). */
export async function preview(settings: StackSettings, opts: { refresh?: boolean } = {}): Promise<Run> {
    await ctx.stack.configure(settings.plain, settings.secrets);
    return ctx.stack.preview(opts);
}

/** A failed run, explained: the engine's errors, the failed steps, the services' journal. */
export function explainFailure(run: Run): string {
    const failed = run.steps.filter((s) => s.failed).map((s) => `${s.name} (${s.op})`);
    const journal = sh("journalctl -u matrix-synapse -u nginx -u postgresql@15-main -n 40 --no-pager").stdout;
    return `${run.command} exited ${run.code}\nfailed steps: ${failed.join(", ")}\n${run.errors.slice(-4000)}\njournal:\n${journal}`;
}

/** Wall time per component (steps run in parallel inside one), from the engine's events. */
export function componentTimes(run: Run): [string, number][] {
    const by = new Map<string, { start: number; end: number }>();
    for (const s of run.steps.filter((x) => x.op !== "same" && x.type !== "pulumi:pulumi:Stack")) {
        const c = s.name.split("-")[0]!;
        const t = by.get(c) ?? { start: s.start, end: s.end };
        by.set(c, { start: Math.min(t.start, s.start), end: Math.max(t.end, s.end) });
    }
    return [...by].map(([c, t]) => [c, t.end - t.start]);
}

// HTTP as a user's client sees it: names from the test DNS, TLS trusted via pebble.
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
