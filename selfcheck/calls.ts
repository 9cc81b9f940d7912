// Calls (matrix:rtc, matrix:turn) as a caller meets them: the focus, the services through nginx,
// the TCP ports from outside.
import { connect as tcpConnect } from "node:net";
import type { StackConfig } from "../config";
import { rtcUrls } from "../render/rtc";
import { describeError, dial, parseJson, reachFix, request, type Network } from "./network";
import { fail, pass, type CheckResult } from "./report";
import { checkTls } from "./tls";

/** A TCP connection to host:port opens (what a provider's firewall lets through), or why not. */
async function tcpOpens(net: Network, host: string, port: number): Promise<string | undefined> {
    const target = await dial(net, host, port);
    return new Promise((resolve) => {
        const socket = tcpConnect({ host: target.address, port: target.port });
        const done = (problem?: string) => {
            socket.destroy();
            resolve(problem);
        };
        socket.setTimeout(net.timeoutMs, () => done(`no answer within ${net.timeoutMs / 1000} s`));
        socket.once("connect", () => done());
        socket.once("error", (err) => done(describeError(err)));
    });
}

/**
 * matrix:rtc and matrix:turn as a caller meets them: the focus in the client well-known, both
 * services through nginx, and the TCP ports from outside (UDP cannot be probed without a call:
 * docs/calls.md lists what to open).
 */
export async function checkCalls(
    net: Network,
    cfg: Pick<StackConfig, "rtc" | "turn" | "homeserverHost" | "delegation" | "domain">,
    now: number,
): Promise<CheckResult[]> {
    const host = cfg.homeserverHost;
    const providerFix = (port: number) =>
        `open TCP ${port} at your provider's firewall (security group); the host's own firewall opens it (run pulumi up)`;
    const open = async (id: string, port: number) => {
        try {
            const problem = await tcpOpens(net, host, port);
            return problem
                ? fail(id, `${host}:${port}: ${problem}`, providerFix(port))
                : pass(id, `${host}:${port} opens`);
        } catch (err) {
            return fail(id, `${host}:${port}: ${describeError(err)}`, reachFix(err, host, port));
        }
    };
    const checks: Promise<CheckResult>[] = [];
    if (cfg.rtc) {
        const { serviceUrl, sfuUrl } = rtcUrls(host);
        const redeploy = "run pulumi up (it starts the service and writes the vhost)";
        checks.push(
            (async () => {
                const where =
                    cfg.delegation === "none"
                        ? `https://${host}/.well-known/matrix/client`
                        : `https://${cfg.domain}/.well-known/matrix/client`;
                try {
                    const doc = parseJson((await request(net, where)).body) as Record<string, unknown> | undefined;
                    const foci = doc?.["org.matrix.msc4143.rtc_foci"] as
                        { livekit_service_url?: unknown }[] | undefined;
                    return foci?.some((f) => f.livekit_service_url === serviceUrl)
                        ? pass("calls focus", `${where} names ${serviceUrl}`)
                        : fail(
                              "calls focus",
                              `${where} has no LiveKit focus at ${serviceUrl}: Element Call finds no backend (MISSING_MATRIX_RTC_FOCUS)`,
                              cfg.delegation === "external"
                                  ? "publish the stack output wellKnown.client again"
                                  : redeploy,
                          );
                } catch (err) {
                    return fail(
                        "calls focus",
                        `${where}: ${describeError(err)}`,
                        reachFix(err, new URL(where).hostname, 443),
                    );
                }
            })(),
            (async () => {
                try {
                    const r = await request(net, `${serviceUrl}/healthz`);
                    return r.status === 200
                        ? pass("calls authorisation", `${serviceUrl}/healthz: 200`)
                        : fail("calls authorisation", `${serviceUrl}/healthz: HTTP ${r.status}`, redeploy);
                } catch (err) {
                    return fail(
                        "calls authorisation",
                        `${serviceUrl}: ${describeError(err)}`,
                        reachFix(err, host, 443),
                    );
                }
            })(),
            (async () => {
                const url = `${sfuUrl.replace(/^wss:/, "https:")}/`;
                try {
                    const r = await request(net, url);
                    return r.status === 200 && r.body.toString("utf8").trim() === "OK"
                        ? pass("calls sfu", `${url}: OK`)
                        : fail("calls sfu", `${url}: HTTP ${r.status}`, redeploy);
                } catch (err) {
                    return fail("calls sfu", `${url}: ${describeError(err)}`, reachFix(err, host, 443));
                }
            })(),
            open("calls ice/tcp", cfg.rtc.tcpPort),
        );
    }
    if (cfg.turn) {
        checks.push(open("calls turn/tcp", cfg.turn.port), checkTls(net, host, now, cfg.turn.tlsPort));
    }
    return Promise.all(checks);
}
