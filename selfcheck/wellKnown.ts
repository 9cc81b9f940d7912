// 3. well-known: /.well-known/matrix/server and /client as clients and other servers read them.
import type { StackConfig } from "../config";
import { wellKnownServer } from "../render/wellknown";
import {
    describeError,
    parseJson,
    rawHeaderValues,
    reachFix,
    request,
    stripSlash,
    type HttpResponse,
    type Network,
} from "./network";
import { fail, pass, warn, type CheckResult } from "./report";

/** The problems with a well-known document's response: status, JSON, Content-Type, CORS. */
function jsonDocumentProblems(res: HttpResponse): { doc: unknown; problems: string[] } {
    const problems: string[] = [];
    if (res.status !== 200) problems.push(`HTTP ${res.status}`);
    const types = rawHeaderValues(res, "content-type");
    if (types.length !== 1) problems.push(`${types.length} Content-Type headers (${types.join(" | ")})`);
    else if (types[0] !== "application/json") problems.push(`Content-Type ${types[0]}, not application/json`);
    const cors = rawHeaderValues(res, "access-control-allow-origin");
    if (cors.length !== 1 || cors[0] !== "*") {
        problems.push(
            cors.length === 0 ? "no Access-Control-Allow-Origin" : `Access-Control-Allow-Origin ${cors.join(" | ")}`,
        );
    }
    const doc = parseJson(res.body);
    if (doc === undefined || doc === null || typeof doc !== "object") problems.push("the body is not a JSON object");
    return { doc, problems };
}

async function checkWellKnownDocument(
    net: Network,
    url: string,
    id: string,
    validate: (doc: Record<string, unknown>) => string | undefined,
    fix: string,
    soft: boolean,
): Promise<CheckResult> {
    const report = soft ? warn : fail;
    let res: HttpResponse;
    try {
        res = await request(net, url);
    } catch (err) {
        const u = new URL(url);
        return report(id, `${url}: ${describeError(err)}`, soft ? fix : reachFix(err, u.hostname, 443));
    }
    const { doc, problems } = jsonDocumentProblems(res);
    if (problems.length === 0) {
        const wrong = validate(doc as Record<string, unknown>);
        if (wrong) problems.push(wrong);
    }
    if (problems.length > 0) return report(id, `${url}: ${problems.join("; ")}`, fix);
    return pass(id, `${url}: ${JSON.stringify(doc)}`);
}

/** /.well-known/matrix/server and /client where the delegation serves them. */
export async function checkWellKnown(
    net: Network,
    s: { serverName: string; homeserverHost: string; homeserverUrl: string; delegation: StackConfig["delegation"] },
): Promise<CheckResult[]> {
    const external = s.delegation === "external";
    const where = (doc: string) =>
        s.delegation === "none"
            ? `https://${s.homeserverHost}/.well-known/matrix/${doc}`
            : `https://${s.serverName}/.well-known/matrix/${doc}`;
    const fix = (doc: string) =>
        external
            ? `publish the stack output wellKnown.${doc} at ${where(doc)} (one Content-Type: application/json, Access-Control-Allow-Origin: *)`
            : `run pulumi up (nginx serves it); if another server answers for ${new URL(where(doc)).hostname}, point its DNS at the host`;
    const mServer = wellKnownServer(s.homeserverHost)["m.server"];
    const server =
        s.delegation === "none"
            ? Promise.resolve(
                  pass("well-known server", `not used: delegation "none", federation reaches ${s.serverName}:8448`),
              )
            : checkWellKnownDocument(
                  net,
                  where("server"),
                  "well-known server",
                  (d) =>
                      d["m.server"] === mServer
                          ? undefined
                          : `m.server is ${JSON.stringify(d["m.server"])}, not "${mServer}"`,
                  fix("server"),
                  external,
              );
    const client = checkWellKnownDocument(
        net,
        where("client"),
        "well-known client",
        (d) => {
            const base = (d["m.homeserver"] as { base_url?: unknown } | undefined)?.base_url;
            return typeof base === "string" && stripSlash(base) === stripSlash(s.homeserverUrl)
                ? undefined
                : `m.homeserver.base_url is ${JSON.stringify(base)}, not "${s.homeserverUrl}"`;
        },
        fix("client"),
        external,
    );
    return Promise.all([server, client]);
}
