// `parseStackConfig` is pure: it takes the raw key/value map that Pulumi holds for the stack
// (what `pulumi.runtime.allConfig()` returns) and yields a typed object with every default
// filled in, or throws a `ConfigError` that lists every bad key at once.
import type { z } from "zod";
import { DEFAULT_ELEMENT_URL, DEFAULT_JWT_SERVICE_URL, DEFAULT_LIVEKIT_URL, DEFAULT_MAS_URL } from "./defaults";
import { crossKeyProblems, defaultHomeserverHost } from "./rules";
import { stackSchema, type StackConfig } from "./schema";
import { PROVIDED_SECRETS, type ProvidedSecret } from "./secrets";

/** Every problem with the stack configuration, in one message. */
export class ConfigError extends Error {
    constructor(readonly problems: string[]) {
        super(
            `Invalid stack configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was deployed:\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "ConfigError";
    }
}

/** Keys that hold a JSON object, boolean or number; Pulumi hands every value over as a string. */
const STRUCTURED_KEYS = new Set([
    "machine",
    "dns",
    "acme",
    "synapse",
    "element",
    "postgres",
    "database",
    "secrets",
    "users",
    "backup",
    "firewall",
    "federation",
    "monitoring",
    "support",
    "rtc",
    "turn",
    "auth",
]);

/** Keys whose values must be stored encrypted (`pulumi config set --secret`). */
const SECRET_KEYS = ["sshPrivateKey", "secrets"];

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
    let v = root;
    for (const k of path) {
        if (typeof v !== "object" || v === null) return undefined;
        v = (v as Record<PropertyKey, unknown>)[k];
    }
    return v;
}

function keyName(path: readonly PropertyKey[]): string {
    const [top, ...rest] = path.map(String);
    return `matrix:${top}${rest.length ? "." + rest.join(".") : ""}`;
}

export interface ParseOptions {
    /** Whether a Cloudflare API token is available (cloudflare:apiToken or CLOUDFLARE_API_TOKEN). */
    cloudflareToken: boolean;
    /** Whether a config key (`matrix:...`) is stored as a secret. Default: every key is. */
    isSecret?: (key: string) => boolean;
}

/**
 * Validate the raw stack config (`namespace:key` → string, as Pulumi stores it).
 * Throws a ConfigError naming every bad key and the expected form.
 */
export function parseStackConfig(raw: Record<string, string>, opts: ParseOptions): StackConfig {
    const problems: string[] = [];
    const values: Record<string, unknown> = {};
    for (const [fullKey, value] of Object.entries(raw)) {
        const sep = fullKey.indexOf(":");
        if (fullKey.slice(0, sep) !== "matrix") continue;
        const key = fullKey.slice(sep + 1);
        if (STRUCTURED_KEYS.has(key)) {
            try {
                values[key] = JSON.parse(value);
            } catch {
                problems.push(
                    `matrix:${key}: expected an object (set it in the stack file or with pulumi config set --path)`,
                );
            }
        } else {
            values[key] = value;
        }
    }
    const result = stackSchema.safeParse(values);
    problems.push(...schemaProblems(result, values));
    problems.push(...crossKeyProblems(values));
    for (const key of SECRET_KEYS) {
        if (values[key] !== undefined && opts.isSecret && !opts.isSecret(`matrix:${key}`)) {
            problems.push(
                `matrix:${key}: is stored in plain text; set it again with pulumi config set --secret${key === "secrets" ? " --path matrix:secrets.<name>" : ` matrix:${key}`}`,
            );
        }
    }
    if (values.dns !== undefined && !opts.cloudflareToken) {
        problems.push(
            "matrix:dns: needs a Cloudflare API token; set it with: pulumi config set --secret cloudflare:apiToken <token> (or remove matrix:dns to manage DNS elsewhere)",
        );
    }
    if (problems.length > 0 || !result.success) throw new ConfigError(problems);
    return completed(result.data);
}

/**
 * Validate typed values (the stack's keys without the `matrix:` prefix, as MatrixHomeserver's
 * args hold them): the same schema and cross-key rules as a stack's config.
 */
export function parseHomeserverConfig(values: Record<string, unknown>): StackConfig {
    const result = stackSchema.safeParse(values);
    const problems = [...schemaProblems(result, values), ...crossKeyProblems(values)];
    if (problems.length > 0 || !result.success) throw new ConfigError(problems);
    return completed(result.data);
}

function schemaProblems(result: ReturnType<typeof stackSchema.safeParse>, values: Record<string, unknown>): string[] {
    const problems: string[] = [];
    if (!result.success) {
        for (const issue of result.error.issues) {
            if (issue.code === "unrecognized_keys") {
                for (const k of issue.keys) {
                    problems.push(
                        `${keyName([...issue.path, k])}: unknown key; check the spelling against docs/configuration.md`,
                    );
                }
            } else if (issue.code === "invalid_type" && valueAt(values, issue.path) === undefined) {
                problems.push(`${keyName(issue.path)}: required; ${requiredHint(issue.path)}`);
            } else {
                problems.push(`${keyName(issue.path)}: ${issue.message}`);
            }
        }
    }
    return problems;
}

/** The validated values with what follows from them filled in. */
function completed(data: z.output<typeof stackSchema>): StackConfig {
    // The key itself is read again as a secret Output (loadSshPrivateKey); it is only checked here.
    const { sshPrivateKey: _checkedOnly, secrets, ...c } = data;
    return {
        ...c,
        providedSecrets: Object.fromEntries(PROVIDED_SECRETS.map((k) => [k, secrets?.[k] !== undefined])) as Record<
            ProvidedSecret,
            boolean
        >,
        homeserverHost: c.homeserverHost ?? defaultHomeserverHost(c.domain, c.delegation),
        elementHost: c.elementHost ?? `element.${c.domain}`,
        element: {
            ...c.element,
            url: c.element.url ?? DEFAULT_ELEMENT_URL(c.element.version),
        },
        // Off is the same as absent; the settings stay in the stack for the next time.
        rtc:
            c.rtc && c.rtc.enabled
                ? {
                      ...c.rtc,
                      livekit: {
                          ...c.rtc.livekit,
                          url: c.rtc.livekit.url ?? DEFAULT_LIVEKIT_URL(c.rtc.livekit.version),
                      },
                      jwtService: {
                          ...c.rtc.jwtService,
                          url: c.rtc.jwtService.url ?? DEFAULT_JWT_SERVICE_URL(c.rtc.jwtService.version),
                      },
                  }
                : undefined,
        turn: c.turn && c.turn.enabled ? c.turn : undefined,
        // Kept when off: `allowDisable` is read then (the preflight's refusal).
        auth: c.auth && {
            ...c.auth,
            mas: { ...c.auth.mas, url: c.auth.mas.url ?? DEFAULT_MAS_URL(c.auth.mas.version) },
        },
    };
}

const REQUIRED_HINTS: Record<string, string> = {
    domain: "the Matrix server name, e.g. pulumi config set matrix:domain example.org",
    machine: "the host to deploy to, e.g. pulumi config set --path matrix:machine.ipv4 203.0.113.10",
    sshPrivateKey: "pulumi config set --secret matrix:sshPrivateKey < ~/.ssh/id_ed25519",
    acme: "pulumi config set --path matrix:acme.email admin@example.org",
    element:
        "pulumi config set --path matrix:element.version 1.12.29 and matrix:element.sha256 <sha256 of the tarball>",
};

function requiredHint(path: readonly PropertyKey[]): string {
    const top = String(path[0]);
    if (path.length === 1 && REQUIRED_HINTS[top]) return `set ${REQUIRED_HINTS[top]}`;
    return `set it with pulumi config set --path ${keyName(path)} <value>`;
}
