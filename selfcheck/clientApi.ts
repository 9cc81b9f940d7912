// 5. the client API: versions, registration as configured, an upload of maxUploadSize.
import { SYNAPSE_SERVICE } from "../render/synapseBase";
import { describeError, parseJson, reachFix, request, stripSlash, text, type Network } from "./network";
import { fail, pass, warn, type CheckResult } from "./report";
import { uploadSizeBytes } from "./units";

export async function checkClientApi(
    net: Network,
    s: { homeserverUrl: string; enableRegistration: boolean; maxUploadSize: string; auth?: boolean },
): Promise<CheckResult[]> {
    const hs = stripSlash(s.homeserverUrl);
    const host = new URL(hs).hostname;
    const synapseDown = `on the host: systemctl status ${SYNAPSE_SERVICE} nginx; journalctl -u ${SYNAPSE_SERVICE} -n 50`;
    const versions = async (): Promise<CheckResult> => {
        const id = "client versions";
        try {
            const res = await request(net, `${hs}/_matrix/client/versions`);
            const list = (parseJson(res.body) as { versions?: unknown } | undefined)?.versions;
            if (res.status === 200 && Array.isArray(list) && list.length > 0) {
                return pass(id, `${list.length} versions, up to ${String(list[list.length - 1])}`);
            }
            return fail(id, `HTTP ${res.status}, no versions list`, synapseDown);
        } catch (err) {
            return fail(id, describeError(err), reachFix(err, host, 443));
        }
    };
    const registration = async (): Promise<CheckResult> => {
        const id = "client registration";
        if (s.auth) return pass(id, "MAS registers accounts (see auth registration)");
        const want = s.enableRegistration ? "open" : "closed";
        try {
            const res = await request(net, `${hs}/_matrix/client/v3/register`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: "{}",
            });
            const body = parseJson(res.body) as { flows?: unknown; errcode?: unknown } | undefined;
            const open = res.status === 401 && Array.isArray(body?.flows) && body.flows.length > 0;
            const closed = res.status === 403 && body?.errcode === "M_FORBIDDEN";
            if (res.status === 429) return warn(id, "rate limited (HTTP 429)", "run the self-check again in a minute");
            if ((open && s.enableRegistration) || (closed && !s.enableRegistration)) {
                return pass(id, `${want}, as configured (HTTP ${res.status}${closed ? " M_FORBIDDEN" : ""})`);
            }
            const got = open ? "open" : closed ? "closed" : `HTTP ${res.status} ${text(body?.errcode)}`.trim();
            return fail(
                id,
                `${got}, but matrix:synapse.enableRegistration says ${want}`,
                open || closed
                    ? "run pulumi up (homeserver.yaml enable_registration); check matrix:synapse.extraConfig"
                    : synapseDown,
            );
        } catch (err) {
            return fail(id, describeError(err), reachFix(err, host, 443));
        }
    };
    const upload = async (): Promise<CheckResult> => {
        const id = "client upload";
        const bytes = uploadSizeBytes(s.maxUploadSize);
        const size = `${bytes} bytes (maxUploadSize ${s.maxUploadSize})`;
        try {
            const res = await request(net, `${hs}/_matrix/media/v3/upload`, {
                method: "POST",
                headers: { "content-type": "application/octet-stream" },
                body: { zeros: bytes },
            });
            const body = parseJson(res.body) as { errcode?: unknown } | undefined;
            if (res.status === 401 && body?.errcode === "M_MISSING_TOKEN") {
                return pass(id, `${size} reach Synapse (401 M_MISSING_TOKEN)`);
            }
            if (res.status === 413) {
                const fromSynapse = body?.errcode !== undefined;
                return fail(
                    id,
                    `${size}: 413 from ${fromSynapse ? `Synapse (${text(body?.errcode)})` : "nginx"}`,
                    `run pulumi up (${fromSynapse ? "Synapse's max_upload_size" : "nginx's client_max_body_size"} follows matrix:synapse.maxUploadSize)`,
                );
            }
            return fail(id, `${size}: HTTP ${res.status} ${text(body?.errcode)}`.trim(), synapseDown);
        } catch (err) {
            return fail(id, `${size}: ${describeError(err)}`, reachFix(err, host, 443));
        }
    };
    return Promise.all([versions(), registration(), upload()]);
}
