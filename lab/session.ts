// A lab session: the real host (systemd-nspawn), pebble, challtestsrv and the artifact server; a
// stack of the program deployed by the real Pulumi CLI (lab/pulumi.ts); an HTTP client that
// resolves through the test DNS and trusts pebble. Used by npm run demo, the benchmarks and every
// host suite; no Jest here.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { Resolver } from "node:dns/promises";
import { mkdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import { Agent, fetch, type RequestInit } from "undici";
import { DEFAULT_SYNAPSE_VERSION } from "../config";
import type { SshTarget } from "../lib/registerUser";
import { acmePorts, challtestsrv, startAcme, startResolver, type Acme } from "./acme";
import { buildWheelhouse, serveArtifacts, type Artifacts } from "./artifacts";
import {
    hostAttach,
    hostDown,
    hostLeftovers,
    hostUp,
    netOf,
    onHost,
    RELEASES_PYTHON,
    type Host,
    type Net,
    type Release,
} from "./host";
import { Stack, type CliOptions, type Run } from "./pulumi";

const ROOT = path.resolve(__dirname, "..");
export const MANAGED_FILE = "pulumi-nodejs:dynamic/matrix:ManagedFile";
export const COMMAND = "command:remote:Command";
export const CACHE = process.env.E2E_CACHE ?? path.join(ROOT, ".cache/e2e");
const SYNAPSE_VENV = process.env.SYNAPSE_VENV ?? path.join(ROOT, ".cache/synapse-venv");
export const DOMAIN = "matrix-e2e.test";
export const HS = `matrix.${DOMAIN}`;
export const EL = `element.${DOMAIN}`;
/** A real Element Web release build (../shared/fixtures/README.md), served as the release users download. */
export const ELEMENT_FIXTURE =
    process.env.ELEMENT_FIXTURE ?? path.resolve(ROOT, "../shared/fixtures/element-v1.12.7.tar.gz");

/** The Element releases the artifact server offers: small stand-ins (a first, a next, the next rebuilt) and the real one. */
export const RELEASES = {
    first: { key: "first", version: "1.12.29" },
    next: { key: "next", version: "1.12.31" },
    rebuilt: { key: "rebuilt", version: "1.12.31", build: "rebuilt" },
    real: { key: "real", version: "1.12.7", file: ELEMENT_FIXTURE },
} as const;
// The first deploy installs an older Synapse; a later phase upgrades to the program's default.
export const OLD_SYNAPSE = "1.162.0";
export const NEW_SYNAPSE = DEFAULT_SYNAPSE_VERSION;
export const timings: [string, number][] = [];
/** The suite this process runs (its phase lines say so: suites may run side by side). */
let suite = "";
/** The `q` quantile of `xs` (nearest rank). */
export const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))]!;

/** Runs a phase, printing its name and duration as it ends (the log shows progress). */
export async function timed<T>(label: string, fn: () => Promise<T> | T): Promise<T> {
    const start = Date.now();
    try {
        return await fn();
    } finally {
        const s = (Date.now() - start) / 1000;
        timings.push([label, s]);
        console.log(`» ${suite ? `[${suite}] ` : ""}${label}: ${s.toFixed(1)} s`);
    }
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
    federation?: Record<string, unknown>;
    /** Any other top-level keys (without the matrix: prefix). */
    more?: Record<string, unknown>;
}

/** One homeserver of a session: its host (booted from the rootfs) and its stack of the program. */
export class Server {
    host!: Host;
    readonly stack: Stack;

    constructor(
        readonly session: Session,
        /** The stack's name and the server's folder in the session. */
        readonly name: string,
        readonly net: Net,
        /** The Matrix server name; the homeserver and Element hosts follow from it and the delegation. */
        readonly domain: string,
        readonly delegation: "apex" | "none" = "apex",
        cli: CliOptions = {},
        /** Debian packages the host's rootfs comes with (none: a bare host, as a new server is). */
        readonly packages: string[] = [],
    ) {
        this.stack = new Stack(path.join(this.dir, "pulumi"), name, cli);
    }

    get dir(): string {
        return path.join(this.session.run, this.name);
    }
    get hs(): string {
        return this.delegation === "none" ? this.domain : `matrix.${this.domain}`;
    }
    get el(): string {
        return `element.${this.domain}`;
    }

    /** Boots the host (or, with `attach`, uses the one this folder already runs) and makes the stack. */
    async boot(attach = false): Promise<void> {
        mkdirSync(this.dir, { recursive: true });
        const running = attach ? hostAttach(this.dir, this.net) : undefined;
        this.host =
            running ?? (await timed(`boot host ${this.net.machine}`, () => hostUp(this.dir, this.net, this.packages)));
        await timed(`pulumi stack ${this.name}`, () => this.stack.init());
    }

    /** A shell command on the host as root (checks, not deployment). */
    sh(command: string, input?: string) {
        return onHost(this.host, command, input);
    }

    /** The serial of `name`'s certificate as stored by certbot, and as nginx serves it. */
    certificateSerials(name: string): { stored: string; served: string } {
        const stored = this.sh(`openssl x509 -noout -serial -in /etc/letsencrypt/live/${name}/cert.pem`);
        const served = this.sh(
            `echo | openssl s_client -connect 127.0.0.1:443 -servername ${name} 2>/dev/null | openssl x509 -noout -serial`,
        );
        return { stored: stored.stdout.trim(), served: served.stdout.trim() };
    }

    /**
     * The test stack: no matrix:dns (the test publishes dnsRecordsToCreate into the test DNS, as a
     * user with another DNS provider would), pebble as the ACME CA, Synapse from the wheelhouse.
     */
    settings(overrides: SettingsOverrides = {}, privateKey = this.host.privateKey): StackSettings {
        const { acme, artifacts } = this.session;
        const o = (key: string, value: unknown) => (value === undefined ? {} : { [`matrix:${key}`]: value });
        return {
            plain: {
                "matrix:domain": this.domain,
                ...(this.delegation === "apex" ? {} : { "matrix:delegation": this.delegation }),
                "matrix:machine": { ipv4: this.host.guestIp, sshHostKey: this.host.hostKey },
                "matrix:acme": {
                    email: `admin@${this.domain}`,
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
                ...o("purgeOnDestroy", overrides.purgeOnDestroy),
                ...o("users", overrides.users),
                ...o("backup", overrides.backup),
                ...o("firewall", overrides.firewall),
                ...o("federation", overrides.federation),
                ...Object.fromEntries(Object.entries(overrides.more ?? {}).map(([k, v]) => [`matrix:${k}`, v])),
            },
            secrets: { "matrix:sshPrivateKey": privateKey },
        };
    }

    /** `pulumi up` of these settings (written to the stack first). */
    async deploy(settings: StackSettings, opts: { refresh?: boolean; replace?: string[] } = {}): Promise<Run> {
        await this.stack.configure(settings.plain, settings.secrets);
        return this.stack.up(opts);
    }

    /** `pulumi preview` of these settings (written to the stack first). */
    async preview(settings: StackSettings, opts: { refresh?: boolean } = {}): Promise<Run> {
        await this.stack.configure(settings.plain, settings.secrets);
        return this.stack.preview(opts);
    }

    /** The host as `npm run register-user` reaches it (lib/registerUser.ts): SSH with the pinned key. */
    target(): SshTarget {
        return {
            ipv4: this.host.guestIp,
            sshPort: 22,
            sshUser: "root",
            sshHostKey: this.host.hostKey,
            privateKey: this.host.privateKey,
        };
    }

    down(): void {
        if (this.host) hostDown(this.dir, this.net);
    }
}

/** A session: pebble and challtestsrv, the artifact server, and one server or more. */
export interface Session {
    run: string;
    acme: Acme;
    artifacts: Artifacts;
    http: Agent;
    servers: Server[];
    /** The hosts' resolver, when they resolve each other's names (federation). */
    resolver?: { stop(): void; running(): boolean };
}

/** The running session and its first server (what the single-server suites use): set by startSession. */
export const ctx = {} as Session & { server: Server; host: Host; stack: Stack };

/** A shell command on the first server's host as root (checks, not deployment). */
export const sh = (command: string, input?: string) => ctx.server.sh(command, input);

/** Each suite's own slot: hosts, CA and artifact ports apart, so suites can run side by side. */
export const SLOTS = {
    e2e: 0,
    hardening: 1,
    federation: 2,
    scale: 3,
    bench: 4,
    demo: 5,
    cloudflare: 6,
    auth: 7,
} as const;

/** The network of the `i`th server of suite `slot`: machine `mx-<name>` on a /30 of its own. */
export const serverNet = (slot: number, name: string, i = 0) => netOf(10 * slot + i, `mx-${name}`);

/**
 * Start pebble, challtestsrv and the artifact server for suite `slot`, and boot its servers
 * (default: one, matrix-e2e.test, named after the suite). `run` is the session's folder; it starts
 * empty, unless `keep` (the demo): then hosts still running are used again, and so is the CA's
 * listener certificate (valid ten years).
 */
export async function startSession(
    run: string,
    slot: number,
    servers: {
        name: string;
        domain: string;
        delegation?: "apex" | "none";
        nameserver?: boolean;
        /** See Server.packages. */
        packages?: string[];
        /** The host's Debian release (default bookworm). */
        release?: Release;
    }[] = [{ name: "e2e", domain: DOMAIN }],
    opts: { keep?: boolean; cli?: CliOptions } = {},
): Promise<Session> {
    suite = servers[0]!.name;
    if (!opts.keep) rmSync(run, { recursive: true, force: true });
    mkdirSync(run, { recursive: true });
    const releases = [...new Set(servers.map((s) => s.release ?? "bookworm"))];
    await timed("rootfs (debootstrap or cache)", () => {
        for (const release of releases) {
            const r = spawnSync("bash", [path.join(__dirname, "host.sh"), "rootfs"], {
                stdio: "inherit",
                env: { ...process.env, E2E_RELEASE: release },
            });
            assert.equal(r.status, 0);
        }
    });
    // The test machine is .1 of each host's /30; the first host's address serves the CA and
    // artifacts once that host's link is up.
    const nets = servers.map((s, i) => serverNet(slot, s.name, i));
    const listen = nets[0]!.hostIp;
    const session = { run, servers: [] as Server[] } as unknown as Session;
    const ports = acmePorts(slot);
    const resolving = nets.filter((_, i) => servers[i]!.nameserver).map((n) => n.hostIp);
    if (resolving.length) {
        session.resolver = startResolver(path.join(run, "resolver"), resolving, `127.0.0.1:${ports.dns}`);
    }
    for (const [i, s] of servers.entries()) {
        const net = { ...nets[i]!, nameserver: s.nameserver ? nets[i]!.hostIp : undefined, release: s.release };
        const server = new Server(session, s.name, net, s.domain, s.delegation, opts.cli, s.packages);
        await server.boot(opts.keep);
        session.servers.push(server);
    }
    session.acme = await timed("start pebble + challtestsrv", () =>
        startAcme(path.join(run, "acme"), listen, ports, opts.keep ? { keep: true, days: 3650 } : {}),
    );
    const wheels = await timed("wheelhouse (pip wheel or cache)", () =>
        // One Python for a session's hosts (a wheelhouse is for one Python).
        buildWheelhouse(CACHE, SYNAPSE_VENV, [OLD_SYNAPSE, NEW_SYNAPSE], RELEASES_PYTHON[releases[0]!]),
    );
    session.artifacts = await serveArtifacts(
        path.join(run, "artifacts"),
        listen,
        8099 + 10 * slot,
        Object.values(RELEASES),
        wheels,
        process.env.PULUMI_TOOLS ?? path.join(ROOT, ".tools/pulumi"),
    );
    session.http = client(session.acme);
    Object.assign(ctx, session, {
        server: session.servers[0]!,
        host: session.servers[0]!.host,
        stack: session.servers[0]!.stack,
    });
    return session;
}

/** Stop everything, print the phase durations, and fail if anything outlived the session. */
export async function stopSession(session: Session = ctx): Promise<void> {
    await session.artifacts?.stop();
    session.acme?.stop();
    session.resolver?.stop();
    for (const s of session.servers ?? []) s.down();
    console.log("\nphase durations:");
    for (const [label, s] of timings) console.log(`  ${label.padEnd(48)} ${s.toFixed(1)} s`);
    // Nothing may outlive the run: no container, no link, no NAT rule, no pebble.
    await new Promise((r) => setTimeout(r, 500));
    const leftovers = [
        ...(session.servers ?? []).flatMap((s) => hostLeftovers(s.net)),
        session.acme?.running() ? "pebble or challtestsrv" : "",
        session.resolver?.running() ? "dnsmasq" : "",
    ].filter(Boolean);
    assert.deepEqual(leftovers, [], `left behind: ${leftovers.join(", ")}`);
}

/** The first server's stack settings (see Server.settings). */
export function stackConfig(overrides: SettingsOverrides = {}, privateKey?: string): StackSettings {
    return ctx.server.settings(overrides, privateKey);
}

/** `pulumi up` of the first server. */
export const deploy = (settings: StackSettings, opts: { refresh?: boolean; replace?: string[] } = {}) =>
    ctx.server.deploy(settings, opts);

/** `pulumi preview` of the first server. */
export const preview = (settings: StackSettings, opts: { refresh?: boolean } = {}) =>
    ctx.server.preview(settings, opts);

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
export async function publishDns(run: Run, session: Session = ctx): Promise<string[]> {
    const records = (run.outputs.dnsRecordsToCreate ?? []) as string[];
    for (const record of records) {
        const [name, type, address] = record.split(" ");
        await challtestsrv(session.acme.challtestsrv, type === "AAAA" ? "add-aaaa" : "add-a", {
            host: `${name}.`,
            addresses: [address],
        });
    }
    return records;
}

/** A failed run, explained: the engine's errors, the failed steps, the services' journal. */
export function explainFailure(run: Run, server: Server = ctx.server): string {
    const failed = run.steps.filter((s) => s.failed).map((s) => `${s.name} (${s.op})`);
    const journal = server.sh("journalctl -u matrix-synapse -u nginx -u 'postgresql@*' -n 40 --no-pager").stdout;
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
function client(acme: Acme): Agent {
    resolver.setServers([acme.dnsServer]);
    return new Agent({
        connect: {
            ca: acme.issuingRoot,
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

/** The first server's host as `npm run register-user` reaches it. */
export const target = (): SshTarget => ctx.server.target();
