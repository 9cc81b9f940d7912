// How the checks reach the server: the options, the Network they make, and the helpers every
// family of checks shares (DNS answers, where to connect, one HTTPS request, timeouts, errors and
// the fixes they call for).
import { lookup as dnsLookup, Resolver } from "node:dns/promises";
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import * as https from "node:https";
import { isIP } from "node:net";
import { Readable } from "node:stream";
import * as tls from "node:tls";
import type { Exec } from "./host";

export interface SelfCheckOptions {
    /** Each network call's timeout, in milliseconds. Default: 10 000. */
    timeoutMs?: number;
    /** PEM CA certificates trusted besides the system's (--ca). */
    ca?: string;
    /** Trust the system's CA store. Default: true (false: only `ca`). */
    systemCa?: boolean;
    /** The DNS server to ask, "IP[:PORT]" (--resolver). Default: the system's. */
    resolver?: string;
    /**
     * Connect elsewhere than DNS says, like curl's --connect-to: "host:port" → "address:port".
     * TLS still names the host. Default: none (tests point names at local servers with it).
     */
    connectTo?: Record<string, string>;
    /** How commands reach a host. Default: sshExec (lib/ssh.ts). */
    exec?: Exec;
    /** The clock, epoch milliseconds. Default: Date.now. */
    now?: () => number;
}

/** How the checks reach the server: timeout, trusted CAs, DNS, overrides. */
export interface Network {
    timeoutMs: number;
    /** The CA certificates TLS verifies against (no intermediates: a server must send its chain). */
    ca: string[];
    resolver?: string;
    connectTo: Record<string, string>;
}

/** The system's CA certificates: Node's own reader where it has one, else Debian's bundle, else Node's. */
export function systemCaCertificates(): string[] {
    const fromNode = (tls as { getCACertificates?: (type: string) => string[] }).getCACertificates;
    if (fromNode) return fromNode("system");
    try {
        return [readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8")];
    } catch {
        return [...tls.rootCertificates];
    }
}

export function makeNetwork(o: SelfCheckOptions = {}): Network {
    const ca = [...(o.systemCa === false ? [] : systemCaCertificates()), ...(o.ca ? [o.ca] : [])];
    if (ca.length === 0) throw new Error("no CA certificates to trust: give --ca, or keep the system's");
    return { timeoutMs: o.timeoutMs ?? 10_000, ca, resolver: o.resolver, connectTo: o.connectTo ?? {} };
}

export function newResolver(net: Network): Resolver {
    const r = new Resolver({ timeout: net.timeoutMs, tries: 1 });
    if (net.resolver) r.setServers([net.resolver]);
    return r;
}

export function timeoutError(what: string, ms: number): Error {
    return Object.assign(new Error(`${what}: no answer within ${ms / 1000} s`), { code: "ETIMEDOUT" });
}

export function withTimeout<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(timeoutError(what, ms)), ms);
    });
    return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

export function errorCode(err: unknown): string | undefined {
    const code = (err as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : undefined;
}

export function describeError(err: unknown): string {
    const message = err instanceof Error ? err.message : String(err);
    const code = errorCode(err);
    return code && !message.includes(code) ? `${message} (${code})` : message;
}

/** DNS answers of one type; a name without such records is an empty list, not an error. */
export async function resolveType(net: Network, name: string, type: "A" | "AAAA"): Promise<string[]> {
    const r = newResolver(net);
    try {
        return await withTimeout(
            net.timeoutMs,
            `DNS ${type} ${name}`,
            type === "A" ? r.resolve4(name) : r.resolve6(name),
        );
    } catch (err) {
        if (errorCode(err) === "ENODATA" || errorCode(err) === "ENOTFOUND") return [];
        throw err;
    } finally {
        r.cancel();
    }
}

/** Where a connection to host:port goes: --connect-to, an address, or the name's (IPv4 first). */
export async function dial(net: Network, host: string, port: number): Promise<{ address: string; port: number }> {
    const over = net.connectTo[`${host}:${port}`];
    if (over !== undefined) {
        const i = over.lastIndexOf(":");
        return { address: over.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(over.slice(i + 1)) };
    }
    if (isIP(host)) return { address: host, port };
    if (net.resolver === undefined) {
        // The system's lookup, /etc/hosts included, as a browser on this machine would.
        const all = await withTimeout(net.timeoutMs, `resolving ${host}`, dnsLookup(host, { all: true }));
        const address = (all.find((a) => a.family === 4) ?? all[0])?.address;
        if (!address) throw Object.assign(new Error(`${host} does not resolve`), { code: "ENOTFOUND" });
        return { address, port };
    }
    const address = (await resolveType(net, host, "A"))[0] ?? (await resolveType(net, host, "AAAA"))[0];
    if (!address) throw Object.assign(new Error(`${host} has no A or AAAA record`), { code: "ENOTFOUND" });
    return { address, port };
}

export interface HttpResponse {
    status: number;
    headers: IncomingHttpHeaders;
    /** As received: name, value, name, value … (to count repeated headers). */
    rawHeaders: string[];
    body: Buffer;
}

interface RequestOptions {
    method?: string;
    headers?: Record<string, string>;
    body?: string | { zeros: number };
    /** Connect here instead (a federation SRV target); the URL's host still names TLS and Host. */
    via?: { host: string; port: number };
}

const MAX_BODY = 4 * 1024 * 1024;

/** A stream of `n` zero bytes. */
function zeros(n: number): Readable {
    const chunk = Buffer.alloc(64 * 1024);
    let left = n;
    return new Readable({
        read() {
            if (left <= 0) {
                this.push(null);
                return;
            }
            const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= c.length;
            this.push(c);
        },
    });
}

/**
 * One HTTPS request, verified against the network's CAs. The timeout bounds the whole call; for
 * an upload (a body of zeros) it bounds each wait for progress instead, as a large body takes as
 * long as the link needs.
 */
export async function request(net: Network, url: string, o: RequestOptions = {}): Promise<HttpResponse> {
    const u = new URL(url);
    if (u.protocol !== "https:") throw new Error(`not an https URL: ${url}`);
    const hostname = u.hostname.replace(/^\[|\]$/g, "");
    const target = await dial(net, o.via?.host ?? hostname, o.via?.port ?? Number(u.port || 443));
    const upload = typeof o.body === "object";
    const length = o.body === undefined ? 0 : typeof o.body === "string" ? Buffer.byteLength(o.body) : o.body.zeros;
    return new Promise<HttpResponse>((resolve, reject) => {
        let done = false;
        // A server may answer before the whole body is sent (nginx's 413), then close: the
        // write error that follows does not replace the answer.
        let responded = false;
        const finish = (err: Error | undefined, res?: HttpResponse) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            req.destroy();
            if (err) reject(err);
            else resolve(res!);
        };
        const req = https.request({
            host: target.address,
            port: target.port,
            servername: isIP(hostname) ? undefined : hostname,
            path: `${u.pathname}${u.search}`,
            method: o.method ?? "GET",
            headers: {
                host: u.host,
                "user-agent": "matrix-pulumi-self-check",
                ...(o.body !== undefined ? { "content-length": String(length) } : {}),
                ...o.headers,
            },
            ca: net.ca,
            agent: false,
            timeout: net.timeoutMs,
        });
        const timer = upload
            ? undefined
            : setTimeout(() => req.destroy(timeoutError(`${o.method ?? "GET"} ${url}`, net.timeoutMs)), net.timeoutMs);
        req.on("timeout", () => req.destroy(timeoutError(`${o.method ?? "GET"} ${url}`, net.timeoutMs)));
        req.on("error", (err) => {
            if (!responded) finish(err);
        });
        req.on("response", (res) => {
            responded = true;
            const chunks: Buffer[] = [];
            let size = 0;
            res.on("data", (c: Buffer) => {
                size += c.length;
                if (size <= MAX_BODY) chunks.push(c);
                else res.destroy();
            });
            res.on("error", (err) => finish(err));
            const complete = () =>
                finish(undefined, {
                    status: res.statusCode ?? 0,
                    headers: res.headers,
                    rawHeaders: res.rawHeaders,
                    body: Buffer.concat(chunks),
                });
            res.on("end", complete);
            res.on("close", complete);
        });
        if (typeof o.body === "object") zeros(o.body.zeros).pipe(req);
        else req.end(o.body);
    });
}

/** Every value of one header, as sent (Node joins or drops repeats in `headers`). */
export function rawHeaderValues(res: HttpResponse, name: string): string[] {
    const values: string[] = [];
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
        if (res.rawHeaders[i]!.toLowerCase() === name.toLowerCase()) values.push(res.rawHeaders[i + 1]!);
    }
    return values;
}

/** A JSON value for a message: strings as they are, anything else as JSON ("" for nothing). */
export function text(v: unknown): string {
    return typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v);
}

export function parseJson(body: Buffer): unknown {
    try {
        return JSON.parse(body.toString("utf8")) as unknown;
    } catch {
        return undefined;
    }
}

/** What to do when a host does not answer on a port. */
export function reachFix(err: unknown, host: string, port: number): string {
    const code = errorCode(err);
    if (code === "ENOTFOUND" || code === "ENODATA") return `create the DNS record for ${host} (see the dns check)`;
    if (code === "ECONNREFUSED") {
        return `nothing listens on ${host}:${port}: on the host, systemctl status nginx; then run pulumi up`;
    }
    if (code?.startsWith("ERR_TLS") || code?.includes("CERT") || code?.includes("SIGNATURE")) {
        return `see the tls check for ${host}`;
    }
    return `open port ${port} in the provider's firewall (and in matrix:firewall); check that ${host} resolves to the host`;
}

export const stripSlash = (url: string) => url.replace(/\/+$/, "");
