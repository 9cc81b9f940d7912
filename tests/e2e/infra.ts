// What surrounds the e2e host on the test machine: Debian's pebble (ACME, validating HTTP-01 for
// real) and pebble-challtestsrv (the test DNS, where the records a stack asks for are put), a
// server for the Element tarball and the Synapse wheelhouse, and the host itself (host.sh).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import * as path from "node:path";
import { Agent, fetch } from "undici";

/** Where a test host lives: its machine name (at most 12 characters) and its /30. */
export interface Net {
    machine: string;
    hostIp: string;
    guestIp: string;
    /** The host's resolver (default: the test machine's). */
    nameserver?: string;
    /** Its Debian release (host.sh E2E_RELEASE): bookworm (the default) or trixie. */
    release?: Release;
}

/** The Debian releases a test host can run, and each one's Python (a wheelhouse must match it). */
export const RELEASES_PYTHON = { bookworm: "3.11", trixie: "3.13" } as const;
export type Release = keyof typeof RELEASES_PYTHON;

/** Host `n`'s network: 10.231.n.0/30, the test machine at .1, the host at .2. */
export function netOf(n: number, machine: string): Net {
    if (machine.length > 12) throw new Error(`machine name over 12 characters: ${machine}`);
    return { machine, hostIp: `10.231.${n}.1`, guestIp: `10.231.${n}.2` };
}

export interface Host {
    net: Net;
    hostIp: string;
    guestIp: string;
    hostKey: string;
    privateKey: string;
    keyPath: string;
}

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
    const res = spawnSync(cmd, args, { encoding: "utf8", env: { ...process.env, ...opts.env }, input: opts.input });
    if (res.status !== 0)
        throw new Error(`${cmd} ${args.join(" ")} failed (${res.status}):\n${res.stderr}${res.stdout}`);
    return res.stdout;
}

const HOST_SH = path.join(__dirname, "host.sh");

/** `KEY=value` lines as a map (the value may contain "="). */
export function keyValues(text: string): Record<string, string> {
    return Object.fromEntries(
        text
            .trim()
            .split("\n")
            .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
}

const hostEnv = (net: Net) => ({
    E2E_MACHINE: net.machine,
    E2E_HOST_IP: net.hostIp,
    E2E_GUEST_IP: net.guestIp,
    E2E_NAMESERVER: net.nameserver ?? "",
    E2E_RELEASE: net.release ?? "bookworm",
});

/**
 * Boot a host in `runDir`. With `packages`, its rootfs has those Debian packages installed already
 * (host.sh E2E_PACKAGES), as the program's packages step would leave it.
 */
export function hostUp(runDir: string, net: Net, packages: string[] = []): Host {
    sh("bash", [HOST_SH, "up", runDir], { env: { ...hostEnv(net), E2E_PACKAGES: packages.join(" ") } });
    const host = hostAttach(runDir, net);
    if (!host) throw new Error(`host ${net.machine} did not come up (see ${runDir}/console.log)`);
    return host;
}

/** The host a run folder already has, booted earlier and still running (the demo's), if any. */
export function hostAttach(runDir: string, net: Net): Host | undefined {
    const pidFile = path.join(runDir, "pid");
    if (!existsSync(pidFile) || !existsSync(path.join(runDir, "host.env"))) return undefined;
    if (spawnSync("kill", ["-0", readFileSync(pidFile, "utf8").trim()]).status !== 0) return undefined;
    const env = keyValues(readFileSync(path.join(runDir, "host.env"), "utf8"));
    return {
        net,
        hostIp: env.HOST_IP!,
        guestIp: env.GUEST_IP!,
        hostKey: env.HOST_KEY!,
        privateKey: readFileSync(path.join(runDir, "key"), "utf8"),
        keyPath: path.join(runDir, "key"),
    };
}

export function hostDown(runDir: string, net: Net): void {
    spawnSync("bash", [HOST_SH, "down", runDir], { stdio: "inherit", env: { ...process.env, ...hostEnv(net) } });
}

/** What of a host outlived it: its nspawn, its link, its NAT rule. */
export function hostLeftovers(net: Net): string[] {
    const subnet = `${net.hostIp.split(".").slice(0, 3).join(".")}.0/30`;
    return [
        spawnSync("ip", ["link", "show", `ve-${net.machine}`]).status === 0 ? `link ve-${net.machine}` : "",
        spawnSync("iptables", ["-t", "nat", "-S", "POSTROUTING"], { encoding: "utf8" }).stdout.includes(subnet)
            ? `NAT rule for ${subnet}`
            : "",
        spawnSync("pgrep", ["-f", `systemd-nspawn .*-M ${net.machine} `]).status === 0
            ? `systemd-nspawn ${net.machine}`
            : "",
    ].filter(Boolean);
}

/** ssh arguments that reach the host as root with the test key (checks, tunnels). */
export function sshTo(host: Host, ...options: string[]): string[] {
    const o = ["BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", ...options];
    return ["-q", "-i", host.keyPath, ...o.flatMap((x) => ["-o", x]), `root@${host.guestIp}`];
}

/** Run a shell command on the host as root, for checks (not part of the deployment). */
export function onHost(host: Host, command: string, input?: string): { code: number; stdout: string; stderr: string } {
    const res = spawnSync("ssh", [...sshTo(host), "--", command], { encoding: "utf8", input });
    return { code: res.status ?? 255, stdout: res.stdout, stderr: res.stderr };
}

/** The ports a session's pebble and challtestsrv use (sessions side by side need their own). */
export interface AcmePorts {
    directory: number;
    management: number;
    dns: number;
    dnsManagement: number;
}

export const acmePorts = (n: number): AcmePorts => ({
    directory: 14000 + 10 * n,
    management: 15000 + 10 * n,
    dns: 8053 + 10 * n,
    dnsManagement: 8055 + 10 * n,
});

export interface Acme {
    directoryUrl: string;
    /** CA of pebble's own listener certificate (what certbot must trust to talk to pebble). */
    listenerCa: string;
    /** The root pebble issues from (this start's). */
    issuingRoot: string;
    challtestsrv: string;
    dnsServer: string;
    stop(): void;
    /** Whether pebble or challtestsrv still runs. */
    running(): boolean;
}

function waitForPort(url: string, dispatcher?: Agent): Promise<void> {
    const deadline = Date.now() + 20_000;
    const attempt = async (): Promise<void> => {
        try {
            await fetch(url, { dispatcher });
        } catch (err) {
            if (Date.now() > deadline) throw err;
            await new Promise((r) => setTimeout(r, 200));
            return attempt();
        }
    };
    return attempt();
}

/**
 * Start pebble (validating HTTP-01 for real through challtestsrv's DNS) and challtestsrv. Pebble's
 * own listener certificate comes from a CA made here, valid `days`; with `keep`, one made before
 * in `dir` is used again (a stack's acme.caBundle stays the same from run to run).
 */
export async function startAcme(
    dir: string,
    listenIp: string,
    ports: AcmePorts,
    opts: AcmeOptions = {},
): Promise<Acme> {
    mkdirSync(dir, { recursive: true });
    const f = (n: string) => path.join(dir, n);
    const days = String(opts.days ?? 2);
    if (!opts.keep || !existsSync(f("cert.pem"))) makeListenerCertificate(f, listenIp, days);
    return runAcme(f, listenIp, ports, opts);
}

export interface AcmeOptions {
    /** Use the listener certificate already in the folder. */
    keep?: boolean;
    /** The listener certificate's validity. Default: 2 days. */
    days?: number;
    /** What pebble issues for. Default: 90 days, as Let's Encrypt. */
    validitySeconds?: number;
    /** Another session's challtestsrv to resolve through (no challtestsrv of its own is started). */
    dnsServer?: string;
}

function makeListenerCertificate(f: (n: string) => string, listenIp: string, days: string): void {
    sh("openssl", [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        days,
        "-subj",
        "/CN=pebble listener CA",
        "-keyout",
        f("ca.key"),
        "-out",
        f("ca.pem"),
    ]);
    sh("openssl", [
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=pebble",
        "-keyout",
        f("key.pem"),
        "-out",
        f("cert.csr"),
    ]);
    writeFileSync(f("cert.ext"), `subjectAltName=IP:${listenIp},IP:127.0.0.1,DNS:localhost\n`);
    sh("openssl", [
        "x509",
        "-req",
        "-in",
        f("cert.csr"),
        "-CA",
        f("ca.pem"),
        "-CAkey",
        f("ca.key"),
        "-CAcreateserial",
        "-days",
        days,
        "-extfile",
        f("cert.ext"),
        "-out",
        f("cert.pem"),
    ]);
}

async function runAcme(f: (n: string) => string, listenIp: string, ports: AcmePorts, opts: AcmeOptions): Promise<Acme> {
    writeFileSync(
        f("pebble.json"),
        JSON.stringify({
            pebble: {
                listenAddress: `${listenIp}:${ports.directory}`,
                managementListenAddress: `${listenIp}:${ports.management}`,
                certificate: f("cert.pem"),
                privateKey: f("key.pem"),
                httpPort: 80,
                tlsPort: 443,
                // Public CAs put a revocation URI in every certificate (testssl rates its absence
                // HIGH); pebble does only when told one. Nothing needs to answer there.
                ocspResponderURL: `http://${listenIp}:4002/`,
                externalAccountBindingRequired: false,
                // Let's Encrypt's 90 days rather than pebble's five years.
                certificateValidityPeriod: opts.validitySeconds ?? 90 * 24 * 3600,
            },
        }),
    );
    const procs: ChildProcess[] = [];
    const log = (name: string, p: ChildProcess) => {
        const out: string[] = [];
        p.stdout?.on("data", (d: Buffer) => out.push(d.toString()));
        p.stderr?.on("data", (d: Buffer) => out.push(d.toString()));
        p.on("exit", () => writeFileSync(f(`${name}.log`), out.join("")));
        procs.push(p);
    };
    const dnsServer = opts.dnsServer ?? `127.0.0.1:${ports.dns}`;
    if (!opts.dnsServer) {
        log(
            "challtestsrv",
            spawn("pebble-challtestsrv", [
                "-dns01",
                `127.0.0.1:${ports.dns}`,
                "-management",
                `127.0.0.1:${ports.dnsManagement}`,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "",
                "-defaultIPv6",
                "",
            ]),
        );
    }
    log(
        "pebble",
        spawn("pebble", ["-config", f("pebble.json"), "-dnsserver", dnsServer], {
            // Real HTTP-01 validation (no PEBBLE_VA_ALWAYS_VALID); no artificial delays or nonce faults.
            env: { ...process.env, PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0" },
        }),
    );
    const listenerCa = readFileSync(f("ca.pem"), "utf8");
    const trusting = new Agent({ connect: { ca: listenerCa } });
    if (!opts.dnsServer) await waitForPort(`http://127.0.0.1:${ports.dnsManagement}/`);
    await waitForPort(`https://${listenIp}:${ports.directory}/dir`, trusting);
    const issuingRoot = await (
        await fetch(`https://${listenIp}:${ports.management}/roots/0`, { dispatcher: trusting })
    ).text();
    return {
        directoryUrl: `https://${listenIp}:${ports.directory}/dir`,
        listenerCa,
        issuingRoot,
        challtestsrv: `http://127.0.0.1:${ports.dnsManagement}`,
        dnsServer,
        stop: () => procs.forEach((p) => p.kill()),
        running: () => procs.some((p) => p.exitCode === null && p.signalCode === null),
    };
}

/**
 * A resolver for hosts that must find each other by name (federation): Debian's dnsmasq on the
 * test machine's side of each host's link, answering `.test` names from challtestsrv (the test
 * DNS) and forwarding every other name to the test machine's own resolver (apt, PyPI).
 */
export function startResolver(dir: string, listen: string[], testDns: string): { stop(): void; running(): boolean } {
    mkdirSync(dir, { recursive: true });
    const [ip, port] = testDns.split(":");
    const p = spawn("dnsmasq", [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--pid-file=",
        // The links appear as the hosts boot.
        "--bind-dynamic",
        ...listen.map((a) => `--listen-address=${a}`),
        `--server=/test/${ip}#${port}`,
        "--resolv-file=/etc/resolv.conf",
        "--log-facility=-",
    ]);
    const out: string[] = [];
    p.stderr.on("data", (d: Buffer) => out.push(d.toString()));
    p.on("exit", () => writeFileSync(path.join(dir, "dnsmasq.log"), out.join("")));
    return { stop: () => p.kill(), running: () => p.exitCode === null && p.signalCode === null };
}

/** A request to pebble-challtestsrv's management API (add-a, clear-a, ...). */
export async function challtestsrv(base: string, op: string, body: unknown): Promise<void> {
    const res = await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`challtestsrv ${op}: ${res.status} ${await res.text()}`);
}

export interface ElementRelease {
    version: string;
    url: string;
    sha256: string;
}

/** A pinned release file (matrix:rtc.livekit, matrix:rtc.jwtService). */
export interface RtcRelease {
    version: string;
    url: string;
    sha256: string;
}

/**
 * The MatrixRTC release files `npm run tools:rtc` built into $PULUMI_TOOLS/rtc, in the projects'
 * own layout (LiveKit's tarball, lk-jwt-service's bare binary). Absent: no rtc releases served.
 */
export const RTC_FILES = {
    livekit: { version: "1.13.5", file: "livekit_1.13.5_linux_amd64.tar.gz" },
    jwtService: { version: "0.5.0", file: "lk-jwt-service_linux_amd64" },
} as const;

export interface Artifacts {
    /** MatrixRTC's release files, as matrix:rtc takes them (when `npm run tools:rtc` built them). */
    rtc?: { livekit: RtcRelease; jwtService: RtcRelease };
    /** The first release served. */
    element: ElementRelease;
    /** Every release served, by its key. */
    elements: Record<string, ElementRelease>;
    /** pip --find-links URL of the Synapse wheelhouse. */
    wheelhouse: string;
    stop(): Promise<void>;
}

/**
 * Wheels for matrix-synapse[postgres,redis] and its dependencies for the host's Python, cached:
 * the host then installs with `pip --no-index --find-links`, the program's air-gapped path, since
 * it cannot verify PyPI's TLS through this sandbox. For the test machine's own Python (Debian 12's
 * 3.11), `pip wheel` builds them here. For another (Debian 13's 3.13), pip downloads the binary
 * wheels made for that Python and psycopg2's source (it has no wheel; the host builds it with the
 * compiler and libpq-dev the program installs), with setuptools and wheel to build it.
 */
export function buildWheelhouse(cache: string, venv: string, versions: string[], python = "3.11"): string {
    const own = python === "3.11";
    const dir = path.join(cache, `wheels-redis-${own ? "" : `py${python}-`}${versions.join("-")}`);
    if (existsSync(dir)) return dir;
    // Suites run side by side: one builds the wheelhouse under a lock, the others wait for it.
    const fetch = own
        ? `"$pip" wheel -q --disable-pip-version-check -w "$dir.part" "matrix-synapse[postgres,redis]==$v"`
        : [
              `"$pip" download -q --disable-pip-version-check -d "$dir.part" --only-binary=:all: --python-version "$py" --implementation cp`,
              `  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64`,
              `  "matrix-synapse[redis]==$v" setuptools wheel`,
          ].join(" \\\n");
    const script = `set -euo pipefail
dir=$1 pip=$2 py=$3; shift 3
[ -d "$dir" ] && exit 0
rm -rf "$dir.part"
for v in "$@"; do
${fetch}
done
${own ? "" : `"$pip" download -q --disable-pip-version-check -d "$dir.part" --no-deps --no-binary=:all: psycopg2`}
mv "$dir.part" "$dir"`;
    mkdirSync(cache, { recursive: true });
    const pip = path.join(venv, "bin/pip");
    sh("flock", [path.join(cache, "wheels.lock"), "bash", "-c", script, "wheels", dir, pip, python, ...versions]);
    return dir;
}

/**
 * A release the artifact server offers: `key` names it, `build` tells two tarballs of one version
 * apart; `file` is a real release tarball to serve instead of a small stand-in.
 */
export interface ReleaseSpec {
    key: string;
    version: string;
    build?: string;
    file?: string;
}

/**
 * Element's real tarball cannot be downloaded here: serve a small one with the release's
 * layout (one top folder element-vX.Y.Z/ with index.html, config.sample.json, bundles/, i18n/).
 */
function elementTarball(dir: string, r: ReleaseSpec): Buffer {
    const work = path.join(dir, r.key);
    const top = path.join(work, `element-v${r.version}`);
    mkdirSync(path.join(top, "bundles", "0123abcd"), { recursive: true });
    mkdirSync(path.join(top, "i18n"), { recursive: true });
    const label = `element ${r.version}${r.build ? ` ${r.build}` : ""}`;
    writeFileSync(path.join(top, "index.html"), `<!doctype html><title>Element</title><p>${label}</p>\n`);
    writeFileSync(path.join(top, "config.sample.json"), JSON.stringify({ default_server_config: {} }));
    writeFileSync(path.join(top, "bundles", "0123abcd", "bundle.js"), "console.log('element');\n");
    writeFileSync(path.join(top, "i18n", "en_EN.json"), "{}\n");
    writeFileSync(path.join(top, "version"), `${r.version}\n`);
    const tarball = path.join(work, `element-v${r.version}.tar.gz`);
    sh("tar", ["-czf", tarball, "-C", work, `element-v${r.version}`]);
    return readFileSync(tarball);
}

/** Serves Element tarballs (at /<key>/element-vX.Y.Z.tar.gz) and the wheelhouse (wheels and sources) as a page of links. */
export async function serveArtifacts(
    dir: string,
    listenIp: string,
    port: number,
    releases: ReleaseSpec[],
    wheelhouse: string,
    rtcDir?: string,
): Promise<Artifacts> {
    const urlPath = (r: ReleaseSpec) => `/${r.key}/element-v${r.version}.tar.gz`;
    const tarballs = new Map(
        releases.map((r) => [urlPath(r), r.file ? readFileSync(r.file) : elementTarball(dir, r)] as const),
    );
    const rtcFiles =
        rtcDir && Object.values(RTC_FILES).every((f) => existsSync(path.join(rtcDir, f.file)))
            ? Object.values(RTC_FILES).map((f) => [`/rtc/${f.file}`, path.join(rtcDir, f.file)] as const)
            : [];
    for (const [url, file] of rtcFiles) tarballs.set(url, readFileSync(file));
    // Wheels, and the sources of what has none (psycopg2, for a Python other than this machine's).
    const wheels = readdirSync(wheelhouse).filter((f) => f.endsWith(".whl") || f.endsWith(".tar.gz"));
    const server: Server = createServer((req, res) => {
        const url = req.url ?? "";
        const tarball = tarballs.get(url);
        if (tarball) {
            res.writeHead(200, { "Content-Type": "application/gzip", "Content-Length": tarball.length });
            res.end(tarball);
        } else if (url === "/wheels/") {
            res.writeHead(200, { "Content-Type": "text/html" });
            res.end(wheels.map((w) => `<a href="${encodeURIComponent(w)}">${w}</a><br>`).join("\n"));
        } else if (url.startsWith("/wheels/") && wheels.includes(decodeURIComponent(url.slice(8)))) {
            res.writeHead(200, { "Content-Type": "application/octet-stream" });
            res.end(readFileSync(path.join(wheelhouse, decodeURIComponent(url.slice(8)))));
        } else {
            res.writeHead(404).end();
        }
    });
    await new Promise<void>((r) => server.listen(port, listenIp, r));
    const elements = Object.fromEntries(
        releases.map((r) => [
            r.key,
            {
                version: r.version,
                url: `http://${listenIp}:${port}${urlPath(r)}`,
                sha256: createHash("sha256")
                    .update(tarballs.get(urlPath(r))!)
                    .digest("hex"),
            },
        ]),
    );
    const rtcRelease = (f: { version: string; file: string }): RtcRelease => ({
        version: f.version,
        url: `http://${listenIp}:${port}/rtc/${f.file}`,
        sha256: createHash("sha256")
            .update(tarballs.get(`/rtc/${f.file}`)!)
            .digest("hex"),
    });
    return {
        rtc:
            rtcFiles.length > 0
                ? { livekit: rtcRelease(RTC_FILES.livekit), jwtService: rtcRelease(RTC_FILES.jwtService) }
                : undefined,
        element: elements[releases[0]!.key]!,
        elements,
        wheelhouse: `http://${listenIp}:${port}/wheels/`,
        stop: () => new Promise((r) => server.close(() => r())),
    };
}

/** Power the host off and boot the same rootfs again; resolves once SSH answers. */
export function hostReboot(runDir: string, net: Net): void {
    sh("bash", [HOST_SH, "reboot", runDir], { env: hostEnv(net) });
}
