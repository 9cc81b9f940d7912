// Test-side helpers: run the program under mocks in a child process, find resources, walk inputs.
import { spawn, spawnSync } from "node:child_process";
import { cpus } from "node:os";
import * as path from "node:path";
import type { ApiAnswer } from "../../lib/cloudflare";
import type { ProgramResult, RecordedResource } from "./program";
import { SECRET_SIG, SECRET_SIG_KEY } from "./stack";

export type { ProgramResult, RecordedResource };
export { mockRandom } from "./program";

export const TEST_SSH_KEY =
    "-----BEGIN OPENSSH PRIVATE KEY-----\nTESTKEYMATERIALdoNotLeakThisAnywhere0123456789\n-----END OPENSSH PRIVATE KEY-----";
/** A server's SSH host key line, as matrix:machine.sshHostKey pins one. */
export const TEST_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/** A complete, valid stack config as Pulumi stores it (objects as JSON strings). */
export function baseConfig(overrides: Record<string, unknown> = {}): Record<string, string> {
    const values: Record<string, unknown> = {
        "matrix:domain": "example.org",
        "matrix:machine": { ipv4: "203.0.113.10", ipv6: "2001:db8::10" },
        "matrix:sshPrivateKey": TEST_SSH_KEY,
        "matrix:dns": { zoneId: "0123456789abcdef0123456789abcdef" },
        "cloudflare:apiToken": "cf-test-token",
        "matrix:acme": { email: "admin@example.org" },
        "matrix:element": { version: "1.12.29", sha256: "a".repeat(64) },
        ...overrides,
    };
    return Object.fromEntries(
        Object.entries(values)
            .filter(([, v]) => v !== undefined)
            .map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    );
}

type RunOptions = {
    preview?: boolean;
    loader?: "tsx" | "ts-node";
    plainKeys?: string[];
    delayMs?: number;
    /** What the preflight reads on each host, by address (tests/harness/program.ts HOST_FACTS by default). */
    hostFacts?: Record<string, string>;
    /** Another program than index.ts (tests/harness/program.ts). */
    program?: string;
    /** The config keys stored as secrets. Default: the stack's own secret keys, less plainKeys. */
    secretKeys?: string[];
    /** State the mocked providers report for resources of a type, beside their inputs. */
    stateByType?: Record<string, Record<string, unknown>>;
    /** Cloudflare's answers to the DNS check, by request path (tests/harness/program.ts). */
    cloudflare?: Record<string, ApiAnswer>;
};

function harnessCall(config: Record<string, string>, opts: RunOptions) {
    const root = path.resolve(__dirname, "../..");
    // ts-node (type-checking) is what the Pulumi CLI's Node.js host loads index.ts with.
    const loader = opts.loader === "ts-node" ? ["-r", "ts-node/register"] : ["--import", "tsx"];
    const secretKeys =
        opts.secretKeys ??
        ["matrix:sshPrivateKey", "cloudflare:apiToken", "matrix:secrets"].filter((k) => !opts.plainKeys?.includes(k));
    return {
        args: [...loader, path.join(__dirname, "program.ts")],
        cwd: root,
        input: JSON.stringify({
            config,
            secretKeys,
            preview: opts.preview ?? false,
            delayMs: opts.delayMs,
            hostFacts: opts.hostFacts,
            program: opts.program,
            stateByType: opts.stateByType,
            cloudflare: opts.cloudflare,
        }),
        env: { ...process.env, CLOUDFLARE_API_TOKEN: "" },
    };
}

function parseResult(stdout: string, status: number | null, stderr: string): ProgramResult {
    // A program that throws leaves the Stack's promises open, and Pulumi's exit hook says so
    // on stderr; the result written before that is what counts.
    try {
        return JSON.parse(stdout) as ProgramResult;
    } catch {
        throw new Error(`program harness failed (exit ${status}): ${stderr}`);
    }
}

export function runProgram(config: Record<string, string>, opts: RunOptions = {}): ProgramResult {
    const call = harnessCall(config, opts);
    const res = spawnSync(process.execPath, call.args, {
        cwd: call.cwd,
        input: call.input,
        encoding: "utf8",
        // Each ManagedFile carries its serialized provider (tens of kB).
        maxBuffer: 64 * 1024 * 1024,
        env: call.env,
    });
    return parseResult(res.stdout, res.status, res.stderr);
}

/** runProgram without blocking, so many configs can run side by side. */
export function runProgramAsync(config: Record<string, string>, opts: RunOptions = {}): Promise<ProgramResult> {
    const call = harnessCall(config, opts);
    const child = spawn(process.execPath, call.args, { cwd: call.cwd, env: call.env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(call.input);
    return new Promise((resolve, reject) =>
        child.on("close", (code) => {
            try {
                resolve(parseResult(stdout, code, stderr));
            } catch (err) {
                reject(err instanceof Error ? err : new Error(String(err)));
            }
        }),
    );
}

/** Programs running at once (each is a Node process; more than the cores only queue for them). */
const SLOTS = Math.max(2, cpus().length);
let running = 0;
const waiting: (() => void)[] = [];

/**
 * runProgramAsync, started now or as soon as a slot is free: a test file schedules every run it
 * needs when it loads, and each test awaits its own.
 */
export function runProgramSoon(config: Record<string, string>, opts: RunOptions = {}): Promise<ProgramResult> {
    const result = new Promise<ProgramResult>((resolve, reject) => {
        const start = () => {
            running++;
            runProgramAsync(config, opts)
                .then(resolve, reject)
                .finally(() => {
                    running--;
                    waiting.shift()?.();
                });
        };
        if (running < SLOTS) start();
        else waiting.push(start);
    });
    // A run no test has awaited yet must not count as an unhandled rejection.
    result.catch(() => undefined);
    return result;
}

export function byName(result: ProgramResult, name: string): RecordedResource {
    const found = result.resources.filter((r) => r.name === name);
    if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
    return found[0]!;
}

export function names(result: ProgramResult, type?: string): string[] {
    return result.resources.filter((r) => !type || r.type === type).map((r) => r.name);
}

/** Does `from` depend on `to`, directly or through other resources? */
export function dependsOn(result: ProgramResult, from: string, to: string): boolean {
    const byUrn = new Map(result.resources.map((r) => [r.urn, r]));
    const target = byName(result, to).urn;
    const seen = new Set<string>();
    const stack = [...byName(result, from).dependencies];
    while (stack.length) {
        const urn = stack.pop()!;
        if (urn === target) return true;
        if (seen.has(urn)) continue;
        seen.add(urn);
        stack.push(...(byUrn.get(urn)?.dependencies ?? []));
    }
    return false;
}

export function isSecretValue(v: unknown): v is { value: unknown } {
    return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;
}

/** Every string in a value that is not inside a secret wrapper. */
export function plainStrings(v: unknown): string[] {
    if (isSecretValue(v)) return [];
    if (typeof v === "string") return [v];
    if (Array.isArray(v)) return v.flatMap(plainStrings);
    if (v && typeof v === "object") return Object.values(v).flatMap(plainStrings);
    return [];
}

/** Every string in a value, secret or not. */
export function allStrings(v: unknown): string[] {
    if (isSecretValue(v)) return allStrings(v.value);
    if (typeof v === "string") return [v];
    if (Array.isArray(v)) return v.flatMap(allStrings);
    if (v && typeof v === "object") return Object.values(v).flatMap(allStrings);
    return [];
}
