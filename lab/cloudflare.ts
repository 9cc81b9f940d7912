// A Cloudflare API of the lab's own, for the real provider (pulumi-resource-cloudflare, npm run
// tools:cloudflare) and the program's own checks (lib/cloudflare.ts): plain HTTP on loopback, which
// the provider accepts as its base URL (cloudflare:baseUrl / CLOUDFLARE_BASE_URL).
//
// What it implements, from Cloudflare's public API reference (api.cloudflare.com, "DNS Records for
// a Zone", "Zones", "User API Tokens") and from the requests the provider makes (upstream
// terraform-provider-cloudflare v5.19.1, internal/services/dns_record; cloudflare-go v6):
// - the envelope {success, errors, messages, result} (lists add result_info);
// - Authorization: Bearer <token>: none → 400 9106; a malformed one → 400 6003 (6111 in its
//   error_chain); a wrong one → 403 10000 "Authentication error" (401 1000 on /user/tokens/verify);
// - GET user/tokens/verify, GET zones (?name=), GET zones/{id} (an unknown id → 400 7003, "Could
//   not route to …, perhaps your object identifier is invalid?", with 7000);
// - zones/{id}/dns_records: list (name, type, content filters; pages), create, get, update (PUT,
//   the whole record), edit (PATCH), delete ({result: {id}}); a missing record → 404 81044;
// - what Cloudflare refuses on create and update: an identical record (400 81058), an A, AAAA or
//   CNAME beside a CNAME at the same name (400 81053), an A or AAAA whose content is not such an
//   address (400 9005), a TTL other than 1 or 60–86400 (400 9021). Two A records of one name with
//   different addresses are allowed, as Cloudflare allows them (round robin);
// - names as Cloudflare stores them: fully qualified and lower case; a name that does not end in
//   the zone's is relative to it ("matrix" in example.org is matrix.example.org);
// - responses with the fields the provider reads back (A/AAAA records carry no settings object).
// Statuses the provider retries (408, 409, 429, 5xx) are never answered: every refusal is final.
//
// Every request is recorded (the token never is: only whether it was right), state lives as long
// as the server (a test's runs share it), and the dashboard's own edits are methods, so a test can
// make drift. With `dns`, the A and AAAA records are published to the lab's test DNS
// (pebble-challtestsrv), so ACME follows the records as it follows Cloudflare's.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIPv4, isIPv6 } from "node:net";
import { challtestsrv } from "./acme";

export interface Zone {
    id: string;
    name: string;
}

/** A DNS record as the API returns it. */
export interface CfRecord {
    id: string;
    zone_id: string;
    zone_name: string;
    name: string;
    type: string;
    content: string;
    ttl: number;
    proxied: boolean;
    proxiable: boolean;
    comment: string | null;
    tags: string[];
    meta: Record<string, unknown>;
    created_on: string;
    modified_on: string;
    comment_modified_on?: string;
}

export interface RecordedRequest {
    method: string;
    /** Path below the base URL, e.g. zones/<id>/dns_records. */
    path: string;
    query: Record<string, string>;
    body?: Record<string, unknown>;
    /** Whether the request carried the right token. */
    authorized: boolean;
    status: number;
}

interface CfError {
    code: number;
    message: string;
    error_chain?: CfError[];
}

class Refusal extends Error {
    constructor(
        readonly status: number,
        readonly errors: CfError[],
    ) {
        super(errors.map((e) => `${e.code} ${e.message}`).join("; "));
    }
}

const TOKEN_FORMAT = /^[A-Za-z0-9_-]{40,}$/;
const PREFIX = "/client/v4/";

/** A new id as Cloudflare writes them: 32 hex digits. */
export const cfId = () => randomBytes(16).toString("hex");

export class FakeCloudflare {
    readonly requests: RecordedRequest[] = [];
    private readonly records = new Map<string, CfRecord>();
    private server?: Server;
    private port = 0;
    /** Names whose addresses are in the test DNS now (to clear those that lose their records). */
    private published = new Set<string>();
    private sync: Promise<void> = Promise.resolve();

    constructor(
        readonly opts: {
            /** The token that is right; any other is refused. */
            token: string;
            zones: Zone[];
            /** challtestsrv's management URL: A and AAAA records are published there. */
            dns?: string;
        },
    ) {}

    /** Listens on 127.0.0.1 (an ephemeral port unless given); resolves to the base URL. */
    async start(port = 0): Promise<string> {
        this.server = createServer((req, res) => void this.handle(req, res));
        await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
        this.port = (this.server.address() as { port: number }).port;
        return this.baseUrl;
    }

    get baseUrl(): string {
        return `http://127.0.0.1:${this.port}/client/v4`;
    }

    async stop(): Promise<void> {
        await this.settled();
        await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    }

    /** Resolves once the test DNS has every change made so far. */
    settled(): Promise<void> {
        return this.sync;
    }

    /** The zone's records now (copies). */
    list(zoneId?: string): CfRecord[] {
        return [...this.records.values()].filter((r) => !zoneId || r.zone_id === zoneId).map((r) => ({ ...r }));
    }

    /** The dashboard: a record added by hand (not through the provider). */
    add(
        zoneId: string,
        record: { name: string; type: string; content: string; ttl?: number; comment?: string },
    ): CfRecord {
        const r = this.create(this.zone(zoneId), { ttl: 1, proxied: false, ...record });
        this.publish();
        return r;
    }

    /** The dashboard: a record edited by hand. */
    edit(id: string, changes: Partial<Pick<CfRecord, "content" | "ttl" | "proxied" | "comment">>): CfRecord {
        const r = this.records.get(id);
        if (!r) throw new Error(`no record ${id}`);
        Object.assign(r, changes, { modified_on: new Date().toISOString() });
        this.publish();
        return { ...r };
    }

    /** The dashboard: a record deleted by hand. */
    remove(id: string): void {
        if (!this.records.delete(id)) throw new Error(`no record ${id}`);
        this.publish();
    }

    private zone(id: string): Zone {
        const zone = this.opts.zones.find((z) => z.id === id);
        if (!zone) {
            throw new Refusal(400, [
                {
                    code: 7003,
                    message: `Could not route to /zones/${id}, perhaps your object identifier is invalid?`,
                },
                { code: 7000, message: "No route for that URI" },
            ]);
        }
        return zone;
    }

    private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
        const url = new URL(req.url ?? "/", "http://fake");
        const path = url.pathname.startsWith(PREFIX)
            ? url.pathname.slice(PREFIX.length).replace(/\/$/, "")
            : url.pathname;
        const query = Object.fromEntries(url.searchParams);
        const auth = req.headers.authorization ?? "";
        const entry: RecordedRequest = {
            method: req.method ?? "GET",
            path,
            query,
            authorized: auth === `Bearer ${this.opts.token}`,
            status: 0,
        };
        let status = 200;
        let payload: Record<string, unknown>;
        try {
            const text = await new Promise<string>((resolve) => {
                const chunks: Buffer[] = [];
                req.on("data", (c: Buffer) => chunks.push(c));
                req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
            });
            if (text) entry.body = JSON.parse(text) as Record<string, unknown>;
            this.authorize(auth, path);
            payload = { success: true, errors: [], messages: [], ...this.route(entry.method, path, query, entry.body) };
        } catch (err) {
            const refusal =
                err instanceof Refusal
                    ? err
                    : new Refusal(400, [{ code: 1004, message: `Bad request: ${String(err)}` }]);
            status = refusal.status;
            payload = { success: false, errors: refusal.errors, messages: [], result: null };
        }
        entry.status = status;
        this.requests.push(entry);
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(payload));
    }

    private authorize(auth: string, path: string): void {
        if (!auth) {
            throw new Refusal(400, [
                { code: 9106, message: "Missing X-Auth-Key, X-Auth-Email or Authorization headers" },
            ]);
        }
        const token = auth.replace(/^Bearer /, "");
        if (!auth.startsWith("Bearer ") || !TOKEN_FORMAT.test(token)) {
            throw new Refusal(400, [
                {
                    code: 6003,
                    message: "Invalid request headers",
                    error_chain: [{ code: 6111, message: "Invalid format for Authorization header" }],
                },
            ]);
        }
        if (token !== this.opts.token) {
            throw path === "user/tokens/verify"
                ? new Refusal(401, [{ code: 1000, message: "Invalid API Token" }])
                : new Refusal(403, [{ code: 10000, message: "Authentication error" }]);
        }
    }

    private route(
        method: string,
        path: string,
        query: Record<string, string>,
        body: Record<string, unknown> | undefined,
    ): Record<string, unknown> {
        const parts = path.split("/");
        if (method === "GET" && path === "user/tokens/verify") {
            return {
                result: { id: "a".repeat(32), status: "active" },
                messages: [{ code: 10000, message: "This API Token is valid and active", type: null }],
            };
        }
        if (parts[0] !== "zones") throw new Refusal(400, [{ code: 7000, message: "No route for that URI" }]);
        if (parts.length === 1 && method === "GET") {
            const zones = this.opts.zones.filter((z) => !query.name || z.name === query.name);
            return page(zones.map(zoneResult), query);
        }
        const zone = this.zone(parts[1]!);
        if (parts.length === 2 && method === "GET") return { result: zoneResult(zone) };
        if (parts[2] !== "dns_records" || parts.length > 4) {
            throw new Refusal(400, [{ code: 7000, message: "No route for that URI" }]);
        }
        if (parts.length === 3) {
            if (method === "GET") {
                const name = query.name ?? query["name.exact"];
                const found = this.list(zone.id).filter(
                    (r) =>
                        (!name || r.name === fqdn(name, zone)) &&
                        (!query.type || r.type === query.type) &&
                        (!query.content || r.content === query.content),
                );
                return page(found, query);
            }
            if (method === "POST") {
                const r = this.create(zone, body ?? {});
                this.publish();
                return { result: r };
            }
            throw new Refusal(405, [{ code: 10405, message: `Method ${method} not allowed` }]);
        }
        const id = parts[3]!;
        const existing = this.records.get(id);
        if (!existing || existing.zone_id !== zone.id) {
            throw new Refusal(404, [{ code: 81044, message: "Record does not exist." }]);
        }
        if (method === "GET") return { result: { ...existing } };
        if (method === "DELETE") {
            this.records.delete(id);
            this.publish();
            return { result: { id } };
        }
        if (method === "PUT" || method === "PATCH") {
            const merged = method === "PUT" ? { ...body } : { ...existing, ...body };
            const next = this.validate(zone, merged, id);
            const now = new Date().toISOString();
            const updated: CfRecord = {
                ...existing,
                ...next,
                modified_on: now,
                ...(next.comment !== existing.comment ? { comment_modified_on: now } : {}),
            };
            this.records.set(id, updated);
            this.publish();
            return { result: { ...updated } };
        }
        throw new Refusal(405, [{ code: 10405, message: `Method ${method} not allowed` }]);
    }

    private create(zone: Zone, body: Record<string, unknown>): CfRecord {
        const fields = this.validate(zone, body);
        const now = new Date().toISOString();
        const r: CfRecord = {
            id: cfId(),
            zone_id: zone.id,
            zone_name: zone.name,
            ...fields,
            proxiable: fields.type === "A" || fields.type === "AAAA" || fields.type === "CNAME",
            meta: {},
            created_on: now,
            modified_on: now,
            ...(fields.comment ? { comment_modified_on: now } : {}),
        };
        this.records.set(r.id, r);
        return { ...r };
    }

    /** The record's own fields as Cloudflare would store them, or the refusal Cloudflare gives. */
    private validate(
        zone: Zone,
        body: Record<string, unknown>,
        id?: string,
    ): Pick<CfRecord, "name" | "type" | "content" | "ttl" | "proxied" | "comment" | "tags"> {
        const refuse = (code: number, message: string) => new Refusal(400, [{ code, message }]);
        const type = typeof body.type === "string" ? body.type : "";
        if (!type) throw refuse(9000, "DNS record type is invalid.");
        if (typeof body.name !== "string" || !body.name) throw refuse(9007, "DNS record name is invalid.");
        const name = fqdn(body.name, zone);
        const content = typeof body.content === "string" ? body.content : "";
        if (type === "A" && !isIPv4(content)) throw refuse(9005, "Content for A record must be a valid IPv4 address.");
        if (type === "AAAA" && !isIPv6(content)) {
            throw refuse(9005, "Content for AAAA record must be a valid IPv6 address.");
        }
        const ttl = Number(body.ttl ?? 1);
        if (!(ttl === 1 || (ttl >= 60 && ttl <= 86400))) {
            throw refuse(9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.");
        }
        const others = this.list(zone.id).filter((r) => r.name === name && r.id !== id);
        if (others.some((r) => r.type === type && r.content === content)) {
            throw refuse(81058, "An identical record already exists.");
        }
        const hostTypes = ["A", "AAAA", "CNAME"];
        if (
            hostTypes.includes(type) &&
            others.some((r) => hostTypes.includes(r.type) && (r.type === "CNAME" || type === "CNAME"))
        ) {
            throw refuse(81053, "An A, AAAA, or CNAME record with that host already exists.");
        }
        return {
            name,
            type,
            content: type === "AAAA" ? content.toLowerCase() : content,
            ttl,
            proxied: body.proxied === true,
            comment: typeof body.comment === "string" && body.comment ? body.comment : null,
            tags: Array.isArray(body.tags) ? (body.tags as string[]) : [],
        };
    }

    /** The A and AAAA records, as the test DNS answers them (queued: one change after another). */
    private publish(): void {
        const base = this.opts.dns;
        if (!base) return;
        const byName = new Map<string, { a: string[]; aaaa: string[] }>();
        for (const r of this.records.values()) {
            const entry = byName.get(r.name) ?? { a: [], aaaa: [] };
            if (r.type === "A") entry.a.push(r.content);
            if (r.type === "AAAA") entry.aaaa.push(r.content);
            byName.set(r.name, entry);
        }
        const gone = [...this.published].filter((n) => !byName.has(n));
        this.published = new Set(byName.keys());
        this.sync = this.sync.then(async () => {
            for (const name of gone) {
                await challtestsrv(base, "clear-a", { host: `${name}.` });
                await challtestsrv(base, "clear-aaaa", { host: `${name}.` });
            }
            for (const [name, { a, aaaa }] of byName) {
                await challtestsrv(base, "clear-a", { host: `${name}.` });
                await challtestsrv(base, "clear-aaaa", { host: `${name}.` });
                if (a.length) await challtestsrv(base, "add-a", { host: `${name}.`, addresses: a });
                if (aaaa.length) await challtestsrv(base, "add-aaaa", { host: `${name}.`, addresses: aaaa });
            }
        });
    }
}

/** A name as Cloudflare stores it: lower case, fully qualified in the zone. */
function fqdn(name: string, zone: Zone): string {
    const n = name.toLowerCase().replace(/\.$/, "");
    if (n === "@") return zone.name;
    return n === zone.name || n.endsWith(`.${zone.name}`) ? n : `${n}.${zone.name}`;
}

function zoneResult(z: Zone): Record<string, unknown> {
    return { id: z.id, name: z.name, status: "active", paused: false, type: "full", name_servers: [] };
}

function page<T>(items: T[], query: Record<string, string>): Record<string, unknown> {
    const perPage = Math.min(Number(query.per_page ?? 100) || 100, 5000);
    const pageNo = Math.max(Number(query.page ?? 1) || 1, 1);
    const result = items.slice((pageNo - 1) * perPage, pageNo * perPage);
    return {
        result,
        result_info: {
            page: pageNo,
            per_page: perPage,
            count: result.length,
            total_count: items.length,
            total_pages: Math.max(1, Math.ceil(items.length / perPage)),
        },
    };
}

/**
 * The same API in a process of its own (`node --import tsx lab/cloudflare.ts`), for callers that
 * block their own event loop while they ask it (the program's DNS check runs synchronously). Its
 * options come as one JSON line on stdin (the token is never on a command line); it prints its
 * base URL and serves until stdin closes.
 */
if (require.main === module) {
    let input = "";
    let api: FakeCloudflare | undefined;
    process.stdin.on("data", (d: Buffer) => {
        input += d.toString();
        if (api || !input.includes("\n")) return;
        api = new FakeCloudflare(JSON.parse(input.slice(0, input.indexOf("\n"))) as FakeCloudflare["opts"]);
        void api.start().then((url) => process.stdout.write(`${url}\n`));
    });
    process.stdin.on("end", () => void api?.stop().then(() => process.exit(0)));
}
