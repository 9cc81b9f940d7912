// Runs index.ts once under Pulumi's mock runtime, in a process of its own (Pulumi's runtime is
// global state), and prints what the engine would have been asked: every resource with its
// inputs, parent and dependencies, and the stack outputs with their secretness.
//
//   node --import tsx tests/harness/program.ts < request.json
//
// request: { config: {"matrix:domain": "..."}, secretKeys: [...], preview?: boolean, delayMs?: number }
// The mocks echo inputs as state; RandomPassword results are derived from the resource name,
// so two runs with one config give identical inputs. With `delayMs`, each custom resource takes
// that long, and the result says when each one started and ended: the order the engine would
// run them in. With `preview`, steps' and files' own outputs are unknown, as in a preview of a
// change to every one of them.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { runStack } from "./stack";
import { setCloudflareReader, type ApiAnswer } from "../../lib/cloudflare";
import { setFactsReader } from "../../lib/preflight";

export interface RecordedResource {
    urn: string;
    type: string;
    name: string;
    parent: string;
    custom: boolean;
    inputs: Record<string, unknown>;
    /** URNs of the resources this one depends on (explicit dependsOn and through inputs). */
    dependencies: string[];
    deleteBeforeReplace: boolean;
    /** What the mock returned as the resource's state (its outputs, secrets wrapped). */
    outputs: Record<string, unknown>;
}

export interface ProgramResult {
    resources: RecordedResource[];
    /** With delayMs: when each custom resource started and ended (ms from the first start). */
    timeline: Record<string, { start: number; end: number }>;
    outputs: Record<string, { value: unknown; secret: boolean }>;
    error?: string;
}

interface Request {
    config: Record<string, string>;
    secretKeys?: string[];
    preview?: boolean;
    delayMs?: number;
    /** What the preflight reads on a host, by its address (render/preflight.ts's lines); default HOST_FACTS. */
    hostFacts?: Record<string, string>;
    /** Another program to run instead of index.ts (one that composes MatrixHomeserver). */
    program?: string;
    /** State the mocked providers report for resources of a type, beside their inputs. */
    stateByType?: Record<string, Record<string, unknown>>;
    /** Cloudflare's answers by request path (lib/cloudflare.ts); default: the zone is matrix:domain, no records. */
    cloudflare?: Record<string, ApiAnswer>;
}

/** Cloudflare's answer to the DNS check's `path`: the canned one, else a zone named matrix:domain and no records. */
function cloudflareAnswer(request: Request, path: string): ApiAnswer {
    const canned = request.cloudflare?.[path];
    if (canned) return canned;
    const ok = (result: unknown): ApiAnswer => ({ status: 200, body: { success: true, errors: [], result } });
    const zone = /^zones\/([^/?]+)$/.exec(path);
    return zone ? ok({ id: zone[1], name: request.config["matrix:domain"] }) : ok([]);
}

/** A new Debian 12 server after the program's first deploy: its PostgreSQL 15/main on 5432. */
export const HOST_FACTS = [
    "os\tdebian 12",
    "os.name\tDebian GNU/Linux 12 (bookworm)",
    "pid1\tsystemd",
    "arch\tamd64",
    `disk.kb\t${40 * 1024 * 1024}`,
    `memory.kb\t${4 * 1024 * 1024}`,
    "pg.cluster\t15 main 5432 online",
    "",
].join("\n");

export function mockRandom(name: string, length: number): string {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const bytes = createHash("sha512").update(`mock:${name}`).digest();
    return Array.from({ length }, (_, i) => alphabet[bytes[i % bytes.length]! % alphabet.length]).join("");
}

async function main(): Promise<void> {
    const request = JSON.parse(readFileSync(0, "utf8")) as Request;
    const resources = new Map<string, RecordedResource>();

    const timeline: ProgramResult["timeline"] = {};
    const outputs = new Map<string, Record<string, unknown>>();
    const t0 = Date.now();
    setFactsReader((connection) => request.hostFacts?.[connection.host] ?? HOST_FACTS);
    setCloudflareReader((_access, path) => cloudflareAnswer(request, path));
    pulumi.runtime.setAllConfig(request.config, request.secretKeys ?? []);
    await pulumi.runtime.setMocks(
        {
            newResource: async (args) => {
                const start = Date.now() - t0;
                if (args.custom && request.delayMs) await new Promise((r) => setTimeout(r, request.delayMs));
                const state: Record<string, unknown> = { ...args.inputs, ...request.stateByType?.[args.type] };
                if (args.type === "random:index/randomPassword:RandomPassword") {
                    state.result = mockRandom(args.name, Number(args.inputs.length ?? 16));
                }
                if (args.type === "command:remote:Command" && !request.preview) {
                    state.stdout = "";
                    state.stderr = "";
                }
                if (args.type.startsWith("pulumi-nodejs:dynamic") && !request.preview) {
                    state.generation = 1;
                }
                if (args.custom) timeline[args.name] = { start, end: Date.now() - t0 };
                outputs.set(args.name, state);
                return { id: `${args.name}-id`, state };
            },
            call: (args) => {
                throw new Error(`unexpected invoke ${args.token}`);
            },
        },
        "matrix",
        "test",
        request.preview ?? false,
    );

    // Record what the SDK sends the engine, dependencies included (the mocks API omits them).
    type Req = {
        getType(): string;
        getName(): string;
        getParent(): string;
        getCustom(): boolean;
        getDependenciesList(): string[];
        getDeletebeforereplace(): boolean;
    };
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource(req: Req, cb: (err: unknown, res: { getUrn(): string }) => void): void;
    };
    const original = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, cb) => {
        original(req, (err, res) => {
            if (!err && res) {
                const urn = res.getUrn();
                resources.set(urn, {
                    urn,
                    type: req.getType(),
                    name: req.getName(),
                    parent: req.getParent(),
                    custom: req.getCustom(),
                    inputs: {},
                    dependencies: [...req.getDependenciesList()].sort(),
                    deleteBeforeReplace: req.getDeletebeforereplace(),
                    outputs: {},
                });
                // Inputs as the mock saw them, secrets still wrapped.
                const inputs = (req as unknown as { getObject(): { toJavaScript(): Record<string, unknown> } })
                    .getObject()
                    .toJavaScript();
                resources.get(urn)!.inputs = inputs;
            }
            cb(err, res);
        });
    };

    const result: ProgramResult = { resources: [], outputs: {}, timeline };
    try {
        result.outputs = await runStack(request.program);
    } catch (err) {
        result.error = err instanceof Error ? err.message : String(err);
    }
    // From the first resource's start: loading the program is not a wait.
    const first = Math.min(...Object.values(timeline).map((t) => t.start));
    for (const t of Object.values(timeline)) {
        t.start -= first;
        t.end -= first;
    }
    result.resources = [...resources.values()]
        .map((r) => ({ ...r, outputs: outputs.get(r.name) ?? {} }))
        .sort((a, b) => a.urn.localeCompare(b.urn));
    // Flushed before the caller's process.exit (a pipe takes 64 kB at a time).
    await new Promise((resolve) => process.stdout.write(JSON.stringify(result), resolve));
}

if (require.main === module) {
    main().then(
        () => process.exit(0),
        (err) => {
            process.stderr.write(String(err?.stack ?? err));
            process.exit(1);
        },
    );
}
