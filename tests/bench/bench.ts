// npm run bench: figures, not a test. On the e2e host (systemd-nspawn, pebble, the real Pulumi
// CLI), in one run, as ratios with the raw numbers beside them:
//   cold `pulumi up` vs its floor (and the engine's own start-up), a no-op `pulumi up`, the no-op
//   re-render, for five single-key changes and for drift: what `pulumi preview` lists against
//   what `pulumi up` changes, the restarts and Synapse's unavailability; proxy overhead (nginx+TLS
//   vs 127.0.0.1:8008, same client on the host, interleaved); one client's message throughput.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpus } from "node:os";
import * as path from "node:path";
import { fetch } from "undici";
import { registerUser, withTunnel } from "../../lib/registerUser";
import { hostPackages } from "../../render/packages";
import { shq } from "../../render/shell";
import { baseConfig, runProgram } from "../harness/run";
import { challtestsrv } from "../../lab/acme";
import { sshTo } from "../../lab/host";
import type { Run } from "../../lab/pulumi";
import { longestOutage } from "./outage";
import {
    CACHE,
    ctx,
    deploy,
    DOMAIN,
    EL,
    explainFailure,
    get,
    HS,
    matrixClient,
    NEW_SYNAPSE,
    OLD_SYNAPSE,
    preview,
    publishDns,
    quantile,
    RELEASES,
    services,
    sh,
    stackConfig,
    startSession,
    SLOTS,
    stopSession,
    target,
    type SettingsOverrides,
    type StackSettings,
} from "../e2e/session";

const RUN = path.join(CACHE, "run-bench");
const lines: string[] = [];
function figure(line: string): void {
    lines.push(line);
    console.log(`» ${line}`);
}
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** What the program installs with apt (render/packages.ts). */
const APT_PACKAGES = hostPackages({ firewall: true });

/**
 * The floor: on a fresh host, only the work no deployment can skip, back to back in one SSH
 * session: the apt packages, the Synapse wheel set into a venv, and the three certificates.
 */
function floorScript(version: string): string {
    const wheelhouse = ctx.artifacts.wheelhouse;
    const trusted = new URL(wheelhouse).hostname;
    const names = [DOMAIN, HS, EL];
    return [
        "set -euo pipefail",
        "export DEBIAN_FRONTEND=noninteractive",
        'ca=$(mktemp); cat > "$ca"',
        "apt-get -q update >/dev/null",
        `apt-get -q install -y --no-install-recommends ${APT_PACKAGES.join(" ")} >/dev/null`,
        "python3 -m venv /opt/floor",
        `/opt/floor/bin/pip install -q --disable-pip-version-check --no-index --find-links ${wheelhouse} --trusted-host ${trusted} 'matrix-synapse[postgres,redis]==${version}'`,
        `export REQUESTS_CA_BUNDLE="$ca"`,
        `certbot register -n --agree-tos -m floor@${DOMAIN} --server ${ctx.acme.directoryUrl} >/dev/null 2>&1`,
        ...names.map(
            (n) =>
                `certbot certonly -n --webroot -w /var/www/html -d ${n} --server ${ctx.acme.directoryUrl} >/dev/null 2>&1`,
        ),
        "echo floor-done",
    ].join("\n");
}

async function timedDeploy(settings: StackSettings): Promise<[Run, number]> {
    const start = Date.now();
    const r = await deploy(settings);
    if (r.code !== 0) throw new Error(explainFailure(r));
    return [r, Date.now() - start];
}

/** Names listed by one run and not the other, both ways ("" when they agree). */
function disagreement(listed: string[], changed: string[]): string {
    const only = (a: string[], b: string[]) => a.filter((x) => !b.includes(x));
    const p = only(listed, changed);
    const u = only(changed, listed);
    return [p.length ? `listed only: ${p.join(", ")}` : "", u.length ? `changed only: ${u.join(", ")}` : ""]
        .filter(Boolean)
        .join("; ");
}

/** Polls Synapse's /health every 100 ms through an SSH tunnel; the longest outage in ms. */
async function watchHealth<T>(during: () => Promise<T>): Promise<[T, number]> {
    return withTunnel(target(), (base) =>
        longestOutage(
            () => fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok),
            during,
            // Until Synapse answers again (the deploy waits for /health, so this is short).
            { settle: true },
        ),
    );
}

/** The same Python client on the host: interleaved requests through nginx+TLS and to 127.0.0.1:8008. */
const PROXY_CLIENT = String.raw`
import http.client, json, ssl, sys, time
cfg = json.loads(sys.stdin.read())
ctx = ssl.create_default_context(cafile=cfg["ca"])
via = {"nginx": http.client.HTTPSConnection(cfg["hs"], 443, context=ctx),
       "direct": http.client.HTTPConnection("127.0.0.1", 8008)}
auth = {"Authorization": "Bearer " + cfg["token"], "Content-Type": "application/json"}
res = {k: {"versions": [], "send": []} for k in via}
def call(conn, method, path, body=None, headers={}):
    t = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse(); r.read()
    assert r.status == 200, (path, r.status)
    return (time.perf_counter() - t) * 1000
for i in range(cfg["n"]):
    for k in (["nginx", "direct"] if i % 2 == 0 else ["direct", "nginx"]):
        res[k]["versions"].append(call(via[k], "GET", "/_matrix/client/versions"))
for i in range(cfg["n"]):
    for k in (["nginx", "direct"] if i % 2 == 0 else ["direct", "nginx"]):
        path = "/_matrix/client/v3/rooms/%s/send/m.room.message/bench-%s-%d" % (cfg["room"], k, i)
        body = json.dumps({"msgtype": "m.text", "body": "bench %d" % i})
        res[k]["send"].append(call(via[k], "PUT", path, body, auth))
print(json.dumps(res))
`;

async function main(): Promise<void> {
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? "?"}`;
    console.log(`machine: ${machine}`);

    // No-op re-render: the program twice with one config, under mocks.
    const a = runProgram(baseConfig());
    const b = runProgram(baseConfig());
    const before = new Map(a.resources.map((r) => [r.urn, JSON.stringify(r.inputs)]));
    const differ = b.resources.filter((r) => before.get(r.urn) !== JSON.stringify(r.inputs));
    figure(`no-op re-render: ${differ.length} resources with different inputs (of ${b.resources.length}); target 0`);

    // Floor, on a fresh host.
    await startSession(RUN, SLOTS.bench, [{ name: "bench", domain: DOMAIN }]);
    let floorMs: number;
    try {
        for (const name of [DOMAIN, HS, EL])
            await challtestsrv(ctx.acme.challtestsrv, "add-a", { host: `${name}.`, addresses: [ctx.host.guestIp] });
        const start = Date.now();
        const floor = await new Promise<{ code: number; out: string }>((resolve) => {
            const child = spawn("ssh", [...sshTo(ctx.host), "--", "bash", "-c", shq(floorScript(OLD_SYNAPSE))]);
            let out = "";
            child.stdout.on("data", (d: Buffer) => (out += d.toString()));
            child.stderr.on("data", (d: Buffer) => (out += d.toString()));
            child.on("close", (code) => resolve({ code: code ?? 1, out }));
            child.stdin.end(ctx.acme.listenerCa);
        });
        floorMs = Date.now() - start;
        if (floor.code !== 0) throw new Error(`floor failed: ${floor.out}`);
    } finally {
        await stopSession();
    }

    // The same on a fresh host, by the program: preview (for the DNS records), then a cold up.
    await startSession(RUN, SLOTS.bench, [{ name: "bench", domain: DOMAIN }]);
    try {
        const first = await preview(stackConfig());
        if (first.code !== 0) throw new Error(explainFailure(first));
        await publishDns(first);
        const [cold, coldMs] = await timedDeploy(stackConfig());
        const work = Math.max(...cold.steps.map((x) => x.end)) - Math.min(...cold.steps.map((x) => x.start));
        figure(
            `cold pulumi up vs floor: ${(coldMs / floorMs).toFixed(2)} (up ${s(coldMs)}, floor ${s(floorMs)}: apt + Synapse wheels + 3 certificates back to back); target ≤ 1.3`,
        );
        figure(
            `engine overhead of the cold up: ${(coldMs / 1000 - work).toFixed(0)} s of ${s(coldMs)} outside the steps (CLI, plugins, loading the program: ${cold.startupSeconds ?? "?"} s until its first resource)`,
        );
        // Each step of the cold up that took a second or more, as seconds from the first step's
        // start (the engine's timestamps are whole seconds), in the order they started.
        const t0 = Math.min(...cold.steps.map((x) => x.start));
        const slow = cold.steps
            .filter((x) => x.type.startsWith("command:") || x.type.startsWith("pulumi-nodejs:dynamic"))
            .filter((x) => x.end - x.start >= 1)
            .sort((x, y) => x.start - y.start || x.end - y.end);
        figure(
            `cold up steps of 1 s or more (start–end, s): ${slow.map((x) => `${x.name} ${x.start - t0}–${x.end - t0}`).join(", ")}`,
        );
        const noop = await timedDeploy(stackConfig());
        figure(
            `no-op pulumi up (refreshing every resource first): ${noop[0].changed.length} changes, ${s(noop[1])}; target 0 changes`,
        );
        const secret = String((await ctx.stack.outputs(true)).registrationSharedSecret);

        // Blast radius: each change from the previous config, one key at a time; the preview
        // must list what the up then changes.
        let current: SettingsOverrides = {};
        const changes: [string, SettingsOverrides][] = [
            ["synapse.enableRegistration", { synapse: { enableRegistration: true } }],
            ["synapse.maxUploadSize", { synapse: { maxUploadSize: "100M" } }],
            ["element.version", { element: { ...ctx.artifacts.elements[RELEASES.next.key] } }],
            ["acme.email", { acme: { email: "ops@matrix-e2e.test" } }],
            ["synapse.version", { synapse: { version: NEW_SYNAPSE } }],
        ];
        let agreed = 0;
        const apply = async (key: string, settings: StackSettings) => {
            const listed = await preview(settings);
            if (listed.code !== 0) throw new Error(explainFailure(listed));
            const p0 = services();
            const [[r, ms], down] = await watchHealth(() => timedDeploy(settings));
            const p1 = services();
            const restarted = [
                p0.synapse !== p1.synapse ? "matrix-synapse restarted" : "",
                p0.nginx !== p1.nginx ? "nginx restarted" : p0.nginxReloads !== p1.nginxReloads ? "nginx reloaded" : "",
                p0.postgres !== p1.postgres ? "postgresql restarted" : "",
            ].filter(Boolean);
            const differs = disagreement(listed.changed, r.changed);
            if (!differs) agreed++;
            figure(
                `blast radius ${key}: ${r.changed.length} resources (${r.changed.join(", ")}); preview listed ${differs ? `something else (${differs})` : "the same"}; ${restarted.join(", ") || "no service restarted"}; Synapse unavailable ${s(down)}; preview ${s(listed.seconds * 1000)}, up ${s(ms)}`,
            );
        };
        for (const [key, change] of changes) {
            current = {
                ...current,
                ...change,
                synapse: { ...current.synapse, ...change.synapse },
                element: { ...current.element, ...change.element },
                acme: { ...current.acme, ...change.acme },
            };
            await apply(key, stackConfig(current));
        }
        // Drift: two hand edits on the host, found by the refresh, put back by up.
        sh(
            "sed -i 's/^enable_registration: true$/enable_registration: false/' /etc/matrix-synapse/homeserver.yaml && " +
                "echo '# hand edit' >> /etc/nginx/sites-available/matrix-homeserver.conf",
        );
        await apply("drift (two files edited by hand)", stackConfig(current));
        figure(`preview lists what up changes: ${agreed} of ${changes.length + 1} (five keys and drift); target all`);

        // Proxy overhead: the same client on the host, 500 requests each way, interleaved.
        const password = randomBytes(12).toString("hex");
        await registerUser(target(), secret, { name: "bench", password, admin: true });
        const mx = await matrixClient("bench", password);
        // Synapse limits each user to 0.2 messages/s (burst 10) by default; lift it for this
        // account, as for a bot, through the admin API (not proxied: through the tunnel).
        await withTunnel(target(), async (base) => {
            const r = await fetch(
                `${base}/_synapse/admin/v1/users/${encodeURIComponent(mx.getUserId()!)}/override_ratelimit`,
                {
                    method: "POST",
                    headers: { Authorization: `Bearer ${mx.getAccessToken()}` },
                    body: JSON.stringify({ messages_per_second: 0, burst_count: 0 }),
                },
            );
            if (!r.ok) throw new Error(`override_ratelimit: ${r.status} ${await r.text()}`);
        });
        const room = (await mx.createRoom({ name: "bench" })).room_id;
        sh(`grep -q ' ${HS}$' /etc/hosts || echo '${ctx.host.guestIp} ${HS}' >> /etc/hosts`);
        sh("cat > /root/bench-ca.pem", ctx.acme.issuingRoot);
        sh("cat > /root/bench-proxy.py", PROXY_CLIENT);
        const raw = sh(
            "python3 /root/bench-proxy.py",
            JSON.stringify({ ca: "/root/bench-ca.pem", hs: HS, token: mx.getAccessToken(), room, n: 500 }),
        );
        if (raw.code !== 0) throw new Error(`proxy client: ${raw.stderr}`);
        const res = JSON.parse(raw.stdout) as Record<"nginx" | "direct", Record<"versions" | "send", number[]>>;
        for (const [what, label] of [
            ["versions", "GET /_matrix/client/versions"],
            ["send", "send a message"],
        ] as const) {
            const n50 = quantile(res.nginx[what], 0.5);
            const d50 = quantile(res.direct[what], 0.5);
            figure(
                `proxy overhead ${label}: p50 ratio ${(n50 / d50).toFixed(2)} (nginx+TLS p50 ${n50.toFixed(2)} ms, p95 ${quantile(res.nginx[what], 0.95).toFixed(2)} ms; direct p50 ${d50.toFixed(2)} ms, p95 ${quantile(res.direct[what], 0.95).toFixed(2)} ms; 500 each, interleaved); target ≤ 1.1`,
            );
        }

        // Throughput: one client, one message at a time, 30 s, through nginx from this machine.
        const latencies: number[] = [];
        const end = Date.now() + 30_000;
        for (let i = 0; Date.now() < end; i++) {
            const t = performance.now();
            const r = await get(
                `https://${HS}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/tp-${i}`,
                {
                    method: "PUT",
                    headers: { Authorization: `Bearer ${mx.getAccessToken()}`, "Content-Type": "application/json" },
                    body: JSON.stringify({ msgtype: "m.text", body: `throughput ${i}` }),
                },
            );
            await r.arrayBuffer();
            if (r.status !== 200) throw new Error(`send ${i}: ${r.status}`);
            latencies.push(performance.now() - t);
        }
        figure(
            `message throughput: ${(latencies.length / 30).toFixed(1)} msg/s over 30 s (${latencies.length} messages, one client, one at a time, through nginx+TLS); p50 ${quantile(latencies, 0.5).toFixed(1)} ms, p95 ${quantile(latencies, 0.95).toFixed(1)} ms`,
        );
    } finally {
        await stopSession();
    }
    console.log(`\nmatrix-pulumi bench (${new Date().toISOString().slice(0, 10)}, ${machine}):`);
    for (const l of lines) console.log(`  ${l}`);
}

main().then(
    () => process.exit(0),
    (err: unknown) => {
        console.error(err instanceof Error ? err.stack : err);
        process.exit(1);
    },
);
