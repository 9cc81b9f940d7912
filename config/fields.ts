// Field types the sections share: how a value is read (Pulumi hands nested numbers and booleans
// over as strings) and the errors that name the expected form.
import { z } from "zod";

const HOSTNAME = /^(?=.{1,253}$)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
export const hostname = (example: string) =>
    z.string({ error: `expected a host name such as ${example}` }).regex(HOSTNAME, {
        error: `expected a lower-case DNS name with at least two labels, such as ${example}`,
    });

/** Pulumi may hand nested numbers and booleans over as strings (`config set --path`). */
const fromString = (v: unknown) =>
    typeof v !== "string" ? v : v === "true" ? true : v === "false" ? false : /^-?[0-9]+$/.test(v) ? Number(v) : v;
export const bool = () => z.preprocess(fromString, z.boolean({ error: "expected true or false" }));
export const int = (error: string) => z.preprocess(fromString, z.number({ error }).int({ error }));

export const sqlIdentifier = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, {
    error: "expected a PostgreSQL identifier: lower-case letters, digits and '_', not starting with a digit, at most 63 characters",
});

export const pem = (what: string) =>
    z.string().refine((s) => s.includes("-----BEGIN CERTIFICATE-----"), {
        error: `expected PEM text containing -----BEGIN CERTIFICATE----- (${what})`,
    });

/** A listening port of a service of ours: unprivileged. */
export const port = (what: string) =>
    int(`expected ${what} from 1024 to 65535`).refine((p) => p >= 1024 && p <= 65535, {
        error: `expected ${what} from 1024 to 65535`,
    });

export const tcpPort = int("expected a TCP port number from 1 to 65535").refine((p) => p >= 1 && p <= 65535, {
    error: "expected a TCP port number from 1 to 65535",
});

/** A pinned release file: its version, its SHA-256 (checked before install) and where it is. */
export const releaseSchema = (what: string, example: string, file: string) =>
    z.strictObject({
        version: z
            .string({ error: `expected a ${what} release as a string, such as "${example}"` })
            .regex(/^[0-9]+\.[0-9]+\.[0-9]+$/, {
                error: `expected a ${what} release such as "${example}" (no leading "v")`,
            })
            .meta({ description: `The ${what} release.` }),
        sha256: z
            .string({ error: "expected the SHA-256 of the release file as a string (quote it in YAML)" })
            .regex(/^[0-9a-f]{64}$/, { error: "expected the SHA-256 of the release file: 64 lower-case hex digits" })
            .meta({ description: `SHA-256 of its ${file}, checked before install.` }),
        url: z
            .url({ protocol: /^https?$/, error: "expected an http(s):// URL of the release file" })
            .optional()
            .meta({ description: "Where to download it (a mirror, say).", defaultText: "its GitHub release" }),
    });

/**
 * Why no host can be reached at an IPv4 address that parses (undefined when one can): the address
 * is the SSH target, the A records' value and what calls announce, so it must be a host's own.
 */
export function unusableIpv4(a: string): string | undefined {
    const [o1 = 0, o2 = 0] = a.split(".").map(Number);
    if (a === "0.0.0.0" || o1 === 0) return 'is not a host\'s address (0.0.0.0/8 means "this network")';
    if (o1 === 127) return "is loopback: the server's own name for itself, no record or client can reach it";
    if (o1 === 169 && o2 === 254)
        return "is link-local: it does not leave the link, and DNS records cannot point at it";
    if (o1 >= 224 && o1 <= 239) return "is a multicast group, not a host";
    if (o1 >= 240) return "is reserved (240.0.0.0/4) or the broadcast address, not a host";
    return undefined;
}

/** The same for IPv6: unspecified, loopback, link-local and multicast addresses. */
export function unusableIpv6(a: string): string | undefined {
    const x = a.toLowerCase();
    if (/^[0:]+$/.test(x)) return "is the unspecified address (::), not a host's";
    if (/^[0:]+:1$/.test(x)) return "is loopback (::1): no record or client can reach it";
    if (/^fe[89ab][0-9a-f]?:/.test(x)) return "is link-local (fe80::/10): DNS records cannot point at it";
    if (x.startsWith("ff")) return "is a multicast group (ff00::/8), not a host";
    return undefined;
}

export const hostIpv4 = (example: string) =>
    z.ipv4({ error: `expected an IPv4 address such as ${example}` }).superRefine((a, ctx) => {
        const why = unusableIpv4(a);
        if (why)
            ctx.addIssue({ code: "custom", message: `${a} ${why}; set the host's own address, such as ${example}` });
    });
export const hostIpv6 = z.ipv6({ error: "expected an IPv6 address such as 2001:db8::10" }).superRefine((a, ctx) => {
    const why = unusableIpv6(a);
    if (why)
        ctx.addIssue({
            code: "custom",
            message: `${a} ${why}; set the host's own global address, such as 2001:db8::10`,
        });
});
