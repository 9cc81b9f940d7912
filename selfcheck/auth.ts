// Matrix Authentication Service (matrix:auth) as a client meets it: Synapse's auth_metadata naming
// MAS, MAS answering through nginx, and registration as configured (MAS's, not Synapse's).
import type { StackConfig } from "../config";
import { masPublicBase } from "../render/mas";
import { describeError, parseJson, reachFix, request, type Network } from "./network";
import { fail, pass, type CheckResult } from "./report";

export async function checkAuth(
    net: Network,
    cfg: Pick<StackConfig, "homeserverHost" | "synapse">,
): Promise<CheckResult[]> {
    const host = cfg.homeserverHost;
    const issuer = masPublicBase(host);
    const redeploy = "run pulumi up (it starts MAS and writes Synapse's config and the vhost)";
    const metadataUrl = `https://${host}/_matrix/client/v1/auth_metadata`;
    let metadata: Record<string, unknown> | undefined;
    const results: CheckResult[] = [];
    try {
        const res = await request(net, metadataUrl);
        metadata = parseJson(res.body) as Record<string, unknown> | undefined;
        results.push(
            res.status === 200 && metadata?.issuer === issuer
                ? pass("auth metadata", `${metadataUrl} names MAS at ${issuer}`)
                : fail(
                      "auth metadata",
                      `${metadataUrl}: HTTP ${res.status}${typeof metadata?.issuer === "string" ? `, issuer ${metadata.issuer}` : ""}, not MAS at ${issuer}: Element X cannot sign in`,
                      redeploy,
                  ),
        );
    } catch (err) {
        results.push(fail("auth metadata", `${metadataUrl}: ${describeError(err)}`, reachFix(err, host, 443)));
    }
    const healthUrl = `${issuer}health`;
    try {
        const res = await request(net, healthUrl);
        results.push(
            res.status === 200
                ? pass("auth health", `${healthUrl} answers`)
                : fail(
                      "auth health",
                      `${healthUrl}: HTTP ${res.status}`,
                      `on the host: systemctl status matrix-authentication-service; then ${redeploy}`,
                  ),
        );
    } catch (err) {
        results.push(fail("auth health", `${healthUrl}: ${describeError(err)}`, reachFix(err, host, 443)));
    }
    if (metadata) {
        const open = ((metadata.prompt_values_supported as unknown[] | undefined) ?? []).includes("create");
        const want = cfg.synapse.enableRegistration;
        results.push(
            open === want
                ? pass(
                      "auth registration",
                      `${open ? "open" : "closed"} in MAS, as matrix:synapse.enableRegistration says`,
                  )
                : fail(
                      "auth registration",
                      `${open ? "open" : "closed"} in MAS, but matrix:synapse.enableRegistration says ${want ? "open" : "closed"}`,
                      redeploy,
                  ),
        );
    }
    return results;
}
