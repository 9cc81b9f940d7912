// The DNS check: before any resource is registered (in `pulumi preview` as in `pulumi up`), the
// program asks Cloudflare's API, as the provider will, whether the token works, whether the zone
// exists and holds every name, and whether a name already has an A, AAAA or CNAME record this
// stack did not create. Each would otherwise surface later, or not at all (Cloudflare accepts a
// second A record beside a stranger's: round robin between the old server and the new one).
import { spawnSync } from "node:child_process";
import * as pulumi from "@pulumi/pulumi";

/** How the provider reaches Cloudflare: its base URL and token (cloudflare:baseUrl, cloudflare:apiToken). */
export interface CloudflareAccess {
    baseUrl: string;
    token: string;
}

export const CLOUDFLARE_API = "https://api.cloudflare.com/client/v4";

/** One answer of the API: the HTTP status and the parsed body, or why there was none. */
export interface ApiAnswer {
    status: number;
    body?: {
        success?: boolean;
        errors?: { code: number; message: string }[];
        result?: unknown;
    };
    error?: string;
}

/** GETs `path` (relative to the base URL) synchronously. */
export type CloudflareReader = (access: CloudflareAccess, path: string) => ApiAnswer;

// The request runs in a child Node.js (the program registers nothing until this returns); the
// token goes over stdin, never on a command line. 429 and 5xx are retried, as the provider does;
// a network error once.
const GET = `
const { url, token } = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
    let out;
    for (let attempt = 0; attempt < 4; attempt++) {
        try {
            const res = await fetch(url, { headers: { authorization: "Bearer " + token }, signal: AbortSignal.timeout(20000) });
            const text = await res.text();
            let body;
            try { body = JSON.parse(text); } catch { body = undefined; }
            out = { status: res.status, body, error: body ? undefined : "not JSON: " + text.slice(0, 200) };
            if (res.status !== 429 && res.status < 500) break;
        } catch (err) {
            out = { status: 0, error: String(err && err.cause ? err.cause : err) };
            if (attempt >= 1) break;
        }
        await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
    }
    process.stdout.write(JSON.stringify(out));
})();
`;

export const readCloudflareApi: CloudflareReader = (access, path) => {
    const url = `${access.baseUrl.replace(/\/+$/, "")}/${path}`;
    const r = spawnSync(process.execPath, ["-e", GET], {
        input: JSON.stringify({ url, token: access.token }),
        encoding: "utf8",
        timeout: 120_000,
    });
    if (r.status !== 0 || !r.stdout) return { status: 0, error: (r.stderr || String(r.error)).trim().slice(0, 300) };
    return JSON.parse(r.stdout) as ApiAnswer;
};

let reader: CloudflareReader = readCloudflareApi;

/** Replace how the API is read (the mock-runtime harness serves canned answers). */
export function setCloudflareReader(r: CloudflareReader): void {
    reader = r;
}

/** This program's stack as record comments name it: `project/stack`. */
export const stackOwner = () => `${pulumi.getProject()}/${pulumi.getStack()}`;

/** The comment on every record the stack creates; a record without it at one of its names is a stranger's. */
export const recordComment = (owner: string) => `managed by matrix-pulumi (stack ${owner})`;

export interface DnsCheck {
    zoneId: string;
    /** The names the stack creates records for. */
    names: string[];
    /** This stack, as the comment names it (project/stack). */
    owner: string;
}

const TOKEN_FIX =
    "create an API token with the permissions Zone → DNS → Edit and Zone → Zone → Read for this zone (dashboard: My Profile → API Tokens), then pulumi config set --secret cloudflare:apiToken <token>";

const errorsOf = (a: ApiAnswer) =>
    (a.body?.errors ?? []).map((e) => `${e.code} ${e.message}`).join("; ") || a.error || `HTTP ${a.status}`;

/**
 * What stands in the way of the stack's records, one line per problem (empty: nothing). Reads the
 * zone, then each name's records; nothing is written.
 */
export function checkDns(access: CloudflareAccess, check: DnsCheck, read: CloudflareReader = reader): string[] {
    const zoneAnswer = read(access, `zones/${check.zoneId}`);
    if (zoneAnswer.status === 0 || !zoneAnswer.body) {
        return [
            `matrix:dns: Cloudflare's API at ${access.baseUrl} did not answer (${errorsOf(zoneAnswer)}); check this machine's network, or cloudflare:baseUrl if you set it`,
        ];
    }
    const codes = (zoneAnswer.body.errors ?? []).map((e) => e.code);
    if (zoneAnswer.status === 401 || zoneAnswer.status === 403 || codes.includes(6003) || codes.includes(9109)) {
        return [
            `cloudflare:apiToken: Cloudflare refused the token for zone ${check.zoneId} (${errorsOf(zoneAnswer)}); ${TOKEN_FIX}`,
        ];
    }
    if (zoneAnswer.status === 404 || codes.includes(7003) || codes.includes(1001)) {
        return [
            `matrix:dns.zoneId: Cloudflare has no zone ${check.zoneId} (${errorsOf(zoneAnswer)}); copy the Zone ID from the domain's Overview page in the dashboard (pulumi config set --path matrix:dns.zoneId <id>)`,
        ];
    }
    if (!zoneAnswer.body.success) {
        return [`matrix:dns.zoneId: Cloudflare refused to read zone ${check.zoneId}: ${errorsOf(zoneAnswer)}`];
    }
    const zone = (zoneAnswer.body.result as { name?: string } | undefined)?.name?.toLowerCase() ?? "";
    const problems: string[] = [];
    const inZone = (n: string) => n === zone || n.endsWith(`.${zone}`);
    const outside = check.names.filter((n) => !inZone(n.toLowerCase()));
    if (outside.length > 0) {
        problems.push(
            `matrix:dns.zoneId: zone ${check.zoneId} is ${zone}, which does not hold ${outside.join(", ")} (Cloudflare would create ${outside[0]}.${zone}); set matrix:dns.zoneId to the zone of matrix:domain, or leave matrix:dns out and create the records elsewhere`,
        );
    }
    const mine = recordComment(check.owner);
    for (const name of check.names.filter((n) => inZone(n.toLowerCase()))) {
        const answer = read(access, `zones/${check.zoneId}/dns_records?name=${encodeURIComponent(name)}&per_page=100`);
        if (answer.status !== 200 || !answer.body?.success) {
            problems.push(
                `matrix:dns: Cloudflare refused to list the records of ${name}: ${errorsOf(answer)}; ${TOKEN_FIX}`,
            );
            continue;
        }
        const records = (answer.body.result ?? []) as {
            id: string;
            type: string;
            content: string;
            comment?: string | null;
        }[];
        // Any stranger's address for the name stands in the way: a CNAME blocks the stack's records,
        // and an A or AAAA beside them would send some clients to another server.
        const blocking = records.filter((r) => r.comment !== mine && ["A", "AAAA", "CNAME"].includes(r.type));
        for (const r of blocking) {
            problems.push(
                `matrix:dns: ${name} already has ${r.type.startsWith("A") ? "an" : "a"} ${r.type} record (${r.content}, id ${r.id}) that this stack did not create; delete it in Cloudflare's dashboard (DNS → Records) so the stack's own record replaces it, or leave matrix:dns out and manage this name's records yourself`,
            );
        }
    }
    return problems;
}

export class DnsCheckError extends Error {
    constructor(readonly problems: string[]) {
        super(
            `Cloudflare is not ready for this stack's records (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was deployed:\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "DnsCheckError";
    }
}
