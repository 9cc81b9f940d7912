// npm run self-check -- [--stack <stack>] [--json] [--ca <file>] [--no-system-ca]
//                        [--resolver <ip[:port]>] [--timeout <seconds>]
//
// After `pulumi up`: checks the deployed homeserver as another server and a client see it (DNS,
// TLS, well-known, federation keys, client API, Element) and, over SSH, as its operator does
// (units, backups, free disk, Synapse's version). One line per check, the summary last; exit 1
// when a check fails, 2 when the stack cannot be read or the arguments are wrong.
import { execFileSync } from "node:child_process";
import { Resolver } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseStackConfig } from "../config";
import {
    formatResult,
    formatSummary,
    parseStackOutputs,
    startSelfCheck,
    summarize,
    type CheckResult,
    type SelfCheckOptions,
    type SelfCheckReport,
    type Summary,
} from "../selfcheck";
import { pulumiCli as registerUserCli } from "./register-user";

/** What the self-check needs from a stack: its raw config (secrets decrypted) and its outputs. */
export interface StackReader {
    config(): Record<string, string>;
    /** `pulumi stack output --json`. */
    outputs(): unknown;
}

/** The Pulumi CLI as the reader: `pulumi config --json --show-secrets` and `pulumi stack output --json`. */
export function pulumiCli(stack?: string): StackReader {
    const sel = stack ? ["--stack", stack] : [];
    return {
        config: () => registerUserCli(stack).config(),
        outputs: () =>
            JSON.parse(execFileSync("pulumi", ["stack", "output", "--json", ...sel], { encoding: "utf8" })) as unknown,
    };
}

const USAGE =
    "usage: npm run self-check -- [--stack <stack>] [--json] [--ca <file>] [--no-system-ca] [--resolver <ip[:port]>] [--timeout <seconds>]";

/** A wrong argument: exit 2 with the usage. */
export class UsageError extends Error {}

export interface SelfCheckArgs {
    stack?: string;
    json: boolean;
    options: SelfCheckOptions;
}

/** The command line, checked; throws a UsageError naming the bad argument. */
export function parseSelfCheckArgs(argv: string[], readFile: (file: string) => string = readCa): SelfCheckArgs {
    let values;
    try {
        ({ values } = parseArgs({
            args: argv,
            options: {
                stack: { type: "string" },
                json: { type: "boolean" },
                ca: { type: "string" },
                "no-system-ca": { type: "boolean" },
                resolver: { type: "string" },
                timeout: { type: "string" },
            },
        }));
    } catch (err) {
        throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    }
    const timeout = values.timeout === undefined ? 10 : Number(values.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 600) {
        throw new UsageError(`--timeout: expected seconds from 1 to 600, not ${values.timeout}\n${USAGE}`);
    }
    if (values.resolver !== undefined) {
        try {
            new Resolver().setServers([values.resolver]);
        } catch {
            throw new UsageError(
                `--resolver: expected an IP address with an optional port (203.0.113.53, 203.0.113.53:5353, [2001:db8::53]:53), not ${values.resolver}\n${USAGE}`,
            );
        }
    }
    const ca = values.ca === undefined ? undefined : readFile(values.ca);
    if (ca !== undefined && !ca.includes("-----BEGIN CERTIFICATE-----")) {
        throw new UsageError(`--ca: ${values.ca} holds no PEM certificate\n${USAGE}`);
    }
    if (values["no-system-ca"] && ca === undefined) {
        throw new UsageError(`--no-system-ca needs --ca: nothing would be trusted\n${USAGE}`);
    }
    return {
        stack: values.stack,
        json: values.json ?? false,
        options: {
            timeoutMs: timeout * 1000,
            ...(ca !== undefined ? { ca } : {}),
            systemCa: !values["no-system-ca"],
            ...(values.resolver !== undefined ? { resolver: values.resolver } : {}),
        },
    };
}

function readCa(file: string): string {
    try {
        return readFileSync(file, "utf8");
    } catch (err) {
        throw new UsageError(`--ca: cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
}

/**
 * Run every check on the stack `argv` names, printing with `print` (one line per check as the
 * checks complete, in a fixed order, the summary last; with --json one document at the end).
 * `overrides` replace what the command line gives (tests: connectTo, exec, now).
 * Returns the exit code: 0 all passed (warnings allowed), 1 a check failed, 2 the stack or the
 * arguments could not be used.
 */
export async function selfCheckFromStack(
    argv: string[],
    reader: (stack?: string) => StackReader,
    overrides: SelfCheckOptions = {},
    print: (line: string) => void = (line) => console.log(line),
): Promise<{ exitCode: number; results: CheckResult[]; summary?: Summary }> {
    let args: SelfCheckArgs;
    let groups: Promise<CheckResult[]>[];
    try {
        args = parseSelfCheckArgs(argv);
        const stack = reader(args.stack);
        const raw = stack.config();
        // DNS is not changed here, so a missing Cloudflare token is no reason to refuse.
        const cfg = parseStackConfig(raw, { cloudflareToken: true });
        const outputs = parseStackOutputs(stack.outputs());
        groups = startSelfCheck(
            { cfg, outputs, sshPrivateKey: raw["matrix:sshPrivateKey"] ?? "" },
            { ...args.options, ...overrides },
        );
    } catch (err) {
        const missing =
            (err as { code?: unknown; path?: unknown }).code === "ENOENT" &&
            (err as { path?: unknown }).path === "pulumi";
        const message = missing
            ? "the Pulumi CLI (pulumi) is not on PATH: install it (npm run tools:pulumi), or run from where it is"
            : err instanceof Error
              ? err.message
              : String(err);
        print(argv.includes("--json") ? JSON.stringify({ error: message }) : message);
        return { exitCode: 2, results: [] };
    }
    const results: CheckResult[] = [];
    for (const group of groups) {
        const done = await group;
        results.push(...done);
        if (!args.json) done.forEach((r) => print(formatResult(r)));
    }
    const summary = summarize(results);
    const report: SelfCheckReport = { results, summary };
    print(args.json ? JSON.stringify(report, null, 2) : formatSummary(summary));
    return { exitCode: summary.failed > 0 ? 1 : 0, results, summary };
}

if (require.main === module) {
    selfCheckFromStack(process.argv.slice(2), pulumiCli).then(
        // A timed-out SSH child may still be running: exit once the output is written.
        ({ exitCode }) => process.stdout.write("", () => process.exit(exitCode)),
        (err: unknown) => {
            console.error(err instanceof Error ? err.message : String(err));
            process.exit(2);
        },
    );
}
