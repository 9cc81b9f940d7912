// 6. Element: config.json names the homeserver, the vhost's security headers, no-cache on the
// entry points.
import { ELEMENT_SECURITY_HEADERS } from "../render/element";
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

/** The security headers the Element vhost sends (render/element.ts's list), Cache-Control aside. */
export function elementSecurityHeaders(): Record<string, string> {
    return { ...ELEMENT_SECURITY_HEADERS };
}

export async function checkElement(
    net: Network,
    s: { elementUrl: string; homeserverUrl: string },
): Promise<CheckResult[]> {
    const el = stripSlash(s.elementUrl);
    const host = new URL(el).hostname;
    const redeploy = "run pulumi up (it rewrites Element's vhost and config.json)";
    let index: HttpResponse;
    let config: HttpResponse;
    try {
        [index, config] = await Promise.all([request(net, `${el}/`), request(net, `${el}/config.json`)]);
    } catch (err) {
        return [fail("element", `${el}: ${describeError(err)}`, reachFix(err, host, 443))];
    }
    const results: CheckResult[] = [];
    const base = (
        parseJson(config.body) as { default_server_config?: { "m.homeserver"?: { base_url?: unknown } } } | undefined
    )?.default_server_config?.["m.homeserver"]?.base_url;
    results.push(
        config.status === 200 && typeof base === "string" && stripSlash(base) === stripSlash(s.homeserverUrl)
            ? pass("element config", `config.json base_url ${base}`)
            : fail(
                  "element config",
                  config.status !== 200
                      ? `config.json: HTTP ${config.status}`
                      : `config.json base_url is ${JSON.stringify(base)}, not "${s.homeserverUrl}"`,
                  redeploy,
              ),
    );
    const expected = elementSecurityHeaders();
    const missing: string[] = [];
    const differing: string[] = [];
    for (const [path, res] of [
        ["/", index],
        ["/config.json", config],
    ] as const) {
        for (const [name, value] of Object.entries(expected)) {
            const got = rawHeaderValues(res, name);
            if (got.length === 0) missing.push(`${name} on ${path}`);
            else if (got.length > 1 || got[0] !== value) differing.push(`${name}: ${got.join(" | ")} on ${path}`);
        }
    }
    const names = Object.keys(expected).join(", ");
    results.push(
        missing.length > 0
            ? fail("element headers", `missing ${missing.join(", ")}`, redeploy)
            : differing.length > 0
              ? warn("element headers", `differ from the vhost's: ${differing.join(", ")}`, redeploy)
              : pass("element headers", names),
    );
    const cache = rawHeaderValues(index, "cache-control").join(", ");
    results.push(
        index.status === 200 && /\bno-(cache|store)\b/.test(cache)
            ? pass("element cache", `index.html: Cache-Control ${cache}`)
            : fail(
                  "element cache",
                  index.status !== 200
                      ? `index.html: HTTP ${index.status}`
                      : `index.html: Cache-Control ${cache || "absent"}: browsers keep an old Element after an upgrade`,
                  redeploy,
              ),
    );
    return results;
}
