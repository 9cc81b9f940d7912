// 4. federation: server discovery as another homeserver does it, and the signing keys it fetches
// there, verified (Matrix canonical JSON, ed25519).
import { createPublicKey, verify as verifySignature } from "node:crypto";
import { isIP } from "node:net";
import type { StackConfig } from "../config";
import { SYNAPSE_PATHS, SYNAPSE_SERVICE } from "../render/synapseBase";
import {
    describeError,
    errorCode,
    newResolver,
    parseJson,
    reachFix,
    request,
    withTimeout,
    type HttpResponse,
    type Network,
} from "./network";
import { fail, pass, type CheckResult } from "./report";
import { formatAge } from "./units";

/** Sort by Unicode code point (Synapse sorts keys in Python), not UTF-16 unit. */
function compareCodePoints(a: string, b: string): number {
    const x = [...a];
    const y = [...b];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
        if (d !== 0) return d;
    }
    return x.length - y.length;
}

/** Matrix canonical JSON (spec appendix): sorted keys, no whitespace, UTF-8 unescaped, integers only. */
export function canonicalJson(value: unknown): string {
    if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
    if (value !== null && typeof value === "object") {
        const o = value as Record<string, unknown>;
        const keys = Object.keys(o)
            .filter((k) => o[k] !== undefined)
            .sort(compareCodePoints);
        return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(",")}}`;
    }
    if (typeof value === "number" && !Number.isInteger(value)) {
        throw new Error(`canonical JSON has no fractions: ${value}`);
    }
    return JSON.stringify(value);
}

/** An ed25519 public key from Matrix's unpadded standard base64. */
function ed25519Key(base64: string) {
    const raw = Buffer.from(base64, "base64");
    if (raw.length !== 32) throw new Error(`an ed25519 key has 32 bytes, not ${raw.length}`);
    return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

/**
 * What is wrong with a `/_matrix/key/v2/server` response, as a remote server checks it (Synapse's
 * keyring does the same): it names the server, every signature of the server by a key in
 * `verify_keys` verifies over the canonical JSON less `signatures` and `unsigned`, there is at
 * least one, and it is still valid.
 */
export function verifyServerKeys(
    doc: unknown,
    serverName: string,
    now: number,
): { problems: string[]; signedBy: string[]; validUntil?: number } {
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
        return { problems: ["the response is not a JSON object"], signedBy: [] };
    }
    const d = doc as Record<string, unknown>;
    const problems: string[] = [];
    if (d.server_name !== serverName) {
        problems.push(`server_name is ${JSON.stringify(d.server_name)}, not "${serverName}"`);
    }
    const verifyKeys = (d.verify_keys ?? {}) as Record<string, { key?: unknown }>;
    const signatures = ((d.signatures ?? {}) as Record<string, Record<string, unknown>>)[serverName] ?? {};
    const { signatures: _s, unsigned: _u, ...signed } = d;
    const message = Buffer.from(canonicalJson(signed), "utf8");
    const signedBy: string[] = [];
    for (const [keyId, signature] of Object.entries(signatures)) {
        const key = verifyKeys[keyId]?.key;
        // Signatures by keys the response does not list cannot be checked (Synapse skips them).
        if (!keyId.startsWith("ed25519:") || typeof key !== "string") continue;
        let ok = false;
        try {
            ok = verifySignature(null, message, ed25519Key(key), Buffer.from(String(signature), "base64"));
        } catch {
            ok = false;
        }
        if (ok) signedBy.push(keyId);
        else problems.push(`the signature by ${keyId} does not verify`);
    }
    if (signedBy.length === 0 && !problems.some((p) => p.startsWith("the signature"))) {
        problems.push(`not signed by ${serverName} with any key in verify_keys`);
    }
    const validUntil = typeof d.valid_until_ts === "number" ? d.valid_until_ts : undefined;
    if (validUntil === undefined) problems.push("valid_until_ts is missing");
    else if (validUntil <= now) problems.push(`valid_until_ts ${new Date(validUntil).toISOString()} is past`);
    return { problems, signedBy, validUntil };
}

/** Where another homeserver sends federation requests for `serverName`, found as the spec says. */
export interface FederationEndpoint {
    /** The base URL: its host names TLS and the Host header. */
    url: string;
    /** The address connected to, when SRV names another host. */
    via?: { host: string; port: number };
    /** How it was found, for the report. */
    how: string;
}

/** "host", "host:port", "[v6]:port" → host and port (port undefined when absent). */
function splitHostPort(value: string): { host: string; port?: number } | undefined {
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::([0-9]{1,5}))?$/.exec(value);
    if (!m) return undefined;
    return { host: m[1]!, port: m[2] !== undefined ? Number(m[2]) : undefined };
}

async function srvTarget(net: Network, host: string): Promise<{ host: string; port: number } | undefined> {
    const r = newResolver(net);
    try {
        const records = await withTimeout(
            net.timeoutMs,
            `SRV _matrix-fed._tcp.${host}`,
            r.resolveSrv(`_matrix-fed._tcp.${host}`),
        );
        const best = [...records].sort((a, b) => a.priority - b.priority || b.weight - a.weight)[0];
        return best ? { host: best.name, port: best.port } : undefined;
    } catch {
        return undefined;
    } finally {
        r.cancel();
    }
}

/** Server discovery (server-server API): IP literal or port, well-known m.server, SRV, then :8448. */
export async function discoverFederation(net: Network, serverName: string): Promise<FederationEndpoint> {
    const named = splitHostPort(serverName);
    if (named && (named.port !== undefined || isIP(named.host.replace(/^\[|\]$/g, "")))) {
        return { url: `https://${named.host}:${named.port ?? 8448}`, how: "the server name itself" };
    }
    let wellKnown: string;
    try {
        const res = await request(net, `https://${serverName}/.well-known/matrix/server`);
        const doc = res.status === 200 ? parseJson(res.body) : undefined;
        const m = (doc as { "m.server"?: unknown } | undefined)?.["m.server"];
        const delegated = typeof m === "string" ? splitHostPort(m) : undefined;
        if (delegated) {
            if (delegated.port !== undefined) {
                return {
                    url: `https://${delegated.host}:${delegated.port}`,
                    how: `well-known m.server ${m as string}`,
                };
            }
            const srv = await srvTarget(net, delegated.host);
            if (srv) {
                return {
                    url: `https://${delegated.host}`,
                    via: srv,
                    how: `well-known ${delegated.host}, SRV ${srv.host}:${srv.port}`,
                };
            }
            return { url: `https://${delegated.host}:8448`, how: `well-known m.server ${delegated.host} (port 8448)` };
        }
        wellKnown = res.status === 200 ? "no m.server in the well-known" : `no well-known (HTTP ${res.status})`;
    } catch (err) {
        wellKnown = `no well-known (${describeError(err)})`;
    }
    const srv = await srvTarget(net, serverName);
    if (srv) return { url: `https://${serverName}`, via: srv, how: `${wellKnown}; SRV ${srv.host}:${srv.port}` };
    return { url: `https://${serverName}:8448`, how: `${wellKnown}; port 8448` };
}

/** The signing keys a remote server fetches, and the federation version endpoint, where discovery leads. */
export async function checkFederation(
    net: Network,
    serverName: string,
    now: number,
    delegation: StackConfig["delegation"],
): Promise<CheckResult[]> {
    const endpoint = await discoverFederation(net, serverName);
    const u = new URL(endpoint.url);
    const port = endpoint.via?.port ?? Number(u.port || 443);
    const unreachable = (err: unknown) =>
        delegation === "none" && port === 8448 && errorCode(err) !== "ECONNREFUSED"
            ? `open port 8448 in the provider's firewall (delegation "none": federation comes to ${serverName}:8448)`
            : reachFix(err, endpoint.via?.host ?? u.hostname, port);
    const get = (p: string) => request(net, `${endpoint.url}${p}`, { via: endpoint.via });
    const keys = async (): Promise<CheckResult> => {
        const id = "federation keys";
        let res: HttpResponse;
        try {
            res = await get("/_matrix/key/v2/server");
        } catch (err) {
            return fail(id, `${endpoint.url} (${endpoint.how}): ${describeError(err)}`, unreachable(err));
        }
        if (res.status !== 200) {
            return fail(
                id,
                `${endpoint.url}/_matrix/key/v2/server: HTTP ${res.status} (${endpoint.how})`,
                "run pulumi up; on the host, systemctl status matrix-synapse nginx",
            );
        }
        const v = verifyServerKeys(parseJson(res.body), serverName, now);
        if (v.problems.length > 0) {
            return fail(
                id,
                `${endpoint.url} (${endpoint.how}): ${v.problems.join("; ")}`,
                v.problems.some((p) => p.startsWith("server_name"))
                    ? `federation reaches another server than ${serverName}'s: fix the well-known (m.server) or DNS`
                    : `restart Synapse (systemctl restart ${SYNAPSE_SERVICE}); if it persists, something between rewrites the response, or ${SYNAPSE_PATHS.signingKey} changed`,
            );
        }
        const left = v.validUntil !== undefined ? `, valid ${formatAge((v.validUntil - now) / 1000)} more` : "";
        return pass(id, `${endpoint.url} (${endpoint.how}): signed by ${v.signedBy.join(", ")}${left}`);
    };
    const version = async (): Promise<CheckResult> => {
        const id = "federation version";
        try {
            const res = await get("/_matrix/federation/v1/version");
            const server = (parseJson(res.body) as { server?: { name?: unknown; version?: unknown } } | undefined)
                ?.server;
            if (res.status === 200 && typeof server?.name === "string" && typeof server.version === "string") {
                return pass(id, `${server.name} ${server.version}`);
            }
            return fail(
                id,
                `HTTP ${res.status}, no server.name/version`,
                "run pulumi up; on the host, systemctl status matrix-synapse nginx",
            );
        } catch (err) {
            return fail(id, `${endpoint.url}: ${describeError(err)}`, unreachable(err));
        }
    };
    return Promise.all([keys(), version()]);
}
