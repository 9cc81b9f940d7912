// 2. TLS: each name's certificate verifies with days to spare, and TLS below 1.2 is refused.
import * as tls from "node:tls";
import { NGINX_PATHS } from "../render/nginx";
import { describeError, dial, errorCode, reachFix, timeoutError, type Network } from "./network";
import { fail, pass, warn, type CheckResult } from "./report";
import { DAY } from "./units";

interface Handshake {
    authorized: boolean;
    error?: string;
    protocol?: string;
    cert?: tls.PeerCertificate;
}

async function handshake(
    net: Network,
    name: string,
    port: number,
    extra: tls.ConnectionOptions = {},
): Promise<Handshake> {
    const target = await dial(net, name, port);
    return new Promise<Handshake>((resolve, reject) => {
        const socket = tls.connect({
            host: target.address,
            port: target.port,
            servername: name,
            ca: net.ca,
            checkServerIdentity: tls.checkServerIdentity,
            // Verified below, so that the reason can be named.
            rejectUnauthorized: false,
            ...extra,
        });
        const timer = setTimeout(
            () => socket.destroy(timeoutError(`TLS ${name}:${port}`, net.timeoutMs)),
            net.timeoutMs,
        );
        socket.once("secureConnect", () => {
            clearTimeout(timer);
            const cert = socket.getPeerCertificate();
            // A code such as "CERT_HAS_EXPIRED" at run time, whatever the typings say.
            const error: unknown = socket.authorizationError;
            resolve({
                authorized: socket.authorized,
                error: typeof error === "string" ? error : error instanceof Error ? describeError(error) : undefined,
                protocol: socket.getProtocol() ?? undefined,
                cert: cert && Object.keys(cert).length > 0 ? cert : undefined,
            });
            socket.destroy();
        });
        socket.once("error", (err: Error) => {
            clearTimeout(timer);
            reject(err);
        });
    });
}

const RENEW_FIX =
    "renew: certbot renew on the host (its deploy hook reloads nginx); check systemctl status certbot.timer";

function tlsErrorFix(code: string | undefined, name: string): string {
    switch (code) {
        case "CERT_HAS_EXPIRED":
            return RENEW_FIX;
        case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
        case "UNABLE_TO_GET_ISSUER_CERT":
            return "nginx must send the whole chain (ssl_certificate …/fullchain.pem): run pulumi up; for a private CA, pass --ca <its root>";
        case "ERR_TLS_CERT_ALTNAME_INVALID":
            return `the certificate served does not name ${name}: run pulumi up (one certificate per name); check ${name} resolves to the host`;
        default:
            return `the certificate does not chain to a trusted CA: for a private ACME CA pass --ca <its root>; otherwise run pulumi up (matrix:acme.directoryUrl: production, not staging)`;
    }
}

/** The certificate for `name` verifies (chain sent by the server, name, dates), with days to spare; TLS ≥ 1.2. */
export async function checkTls(net: Network, name: string, now: number, port = 443): Promise<CheckResult> {
    const id = `tls ${name}${port === 443 ? "" : `:${port}`}`;
    let h: Handshake;
    try {
        h = await handshake(net, name, port);
    } catch (err) {
        return fail(id, `no TLS handshake: ${describeError(err)}`, reachFix(err, name, port));
    }
    const validTo = h.cert ? new Date(h.cert.valid_to) : undefined;
    const until = validTo ? validTo.toISOString().slice(0, 10) : "unknown";
    if (!h.authorized) {
        const what = h.error === "CERT_HAS_EXPIRED" ? `expired on ${until}` : "does not verify";
        return fail(id, `the certificate ${what} (${h.error ?? "unknown reason"})`, tlsErrorFix(h.error, name));
    }
    if (h.protocol !== "TLSv1.2" && h.protocol !== "TLSv1.3") {
        return fail(id, `negotiated ${h.protocol ?? "no protocol"}`, "run pulumi up (ssl_protocols TLSv1.2 TLSv1.3)");
    }
    const days = validTo ? Math.floor((validTo.getTime() - now) / (DAY * 1000)) : -1;
    const issuer = h.cert?.issuer?.CN ?? h.cert?.issuer?.O;
    const detail = `valid ${days} days (until ${until}), ${h.protocol}${issuer ? `, issuer ${String(issuer)}` : ""}`;
    if (days < 7) return fail(id, detail, RENEW_FIX);
    if (days < 21) return warn(id, `${detail}; renewal is overdue (certbot renews at 30)`, RENEW_FIX);
    return pass(id, detail);
}

/** A handshake limited to TLS 1.0–1.1 (with every cipher allowed) must fail. */
export async function checkLegacyTls(net: Network, name: string, port = 443): Promise<CheckResult> {
    const id = `tls-legacy ${name}${port === 443 ? "" : `:${port}`}`;
    try {
        const h = await handshake(net, name, port, {
            minVersion: "TLSv1",
            maxVersion: "TLSv1.1",
            ciphers: "DEFAULT@SECLEVEL=0",
        });
        return fail(
            id,
            `accepts ${h.protocol ?? "TLS below 1.2"}`,
            `run pulumi up (${NGINX_PATHS.tlsSnippet}: ssl_protocols TLSv1.2 TLSv1.3); another server block on 443 with its own ssl_protocols can override it`,
        );
    } catch (err) {
        const code = errorCode(err) ?? "";
        if (code.startsWith("ERR_SSL") || code === "ECONNRESET" || code === "EPROTO") {
            return pass(id, "TLS 1.0 and 1.1 refused");
        }
        return warn(id, `could not tell: ${describeError(err)}`, reachFix(err, name, port));
    }
}
