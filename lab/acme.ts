// The lab's CA and DNS: Debian's pebble (ACME, validating HTTP-01 for real), pebble-challtestsrv
// (the test DNS, where the records a stack asks for are put), and a resolver for hosts that must
// find each other by name.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { Agent, fetch } from "undici";
import { mustRun } from "./host";

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
    mustRun("openssl", [
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
    mustRun("openssl", [
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
    mustRun("openssl", [
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
