// The e2e stand-in for the Pulumi engine: index.ts runs under Pulumi's mock runtime, and the
// mocks act for real. Each remote.Command runs its script over SSH on the test host (with its
// stdin), each RandomPassword draws crypto-random bytes, each Cloudflare DnsRecord becomes a
// record in pebble-challtestsrv. Order comes from the program alone: under mocks a resource is
// registered only once the ones it depends on have resolved.
//
// Like the engine it keeps a state file (resource → input digest, outputs): a later run reuses
// the stored random values and runs a command only when its inputs changed ("update", or
// "replace" when its triggers changed), or every create again with mode "recreate".
//
//   node --import tsx tests/e2e/engine.ts < request.json > result.json
import { createHash, randomInt } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { sshExec, type SshConnection } from "../../lib/ssh";
import { runStack, secretValue, unwrapSecrets } from "../harness/stack";

export interface EngineRequest {
    config: Record<string, string>;
    secretKeys: string[];
    statePath: string;
    /**
     * apply: like `pulumi up`; recreate: every create again; destroy: like `pulumi destroy`;
     * preview: like `pulumi preview` (reports actions, changes nothing).
     */
    mode: "apply" | "recreate" | "destroy" | "preview";
    /** Read each dynamic resource back first, like `--refresh`. */
    refresh?: boolean;
    /** pebble-challtestsrv's management URL, where DNS records are written. */
    challtestsrv: string;
}

export type Action = "create" | "update" | "replace" | "same" | "delete" | "failed";

export interface StepRecord {
    name: string;
    type: string;
    action: Action;
    start: number;
    end: number;
    stdout?: string;
    error?: string;
    /** With refresh: the outputs whose value `read` found different from the state's. */
    refreshed?: string[];
}

export interface EngineResult {
    steps: StepRecord[];
    outputs: Record<string, unknown>;
    error?: string;
}

interface StateEntry {
    type: string;
    name: string;
    digest: string;
    triggers: string;
    /** Completion order: destroy goes backwards through it (dependents before dependencies). */
    seq: number;
    delete?: string;
    connection?: Connection;
    record?: { name: string; type: string };
    /** The provider's ID (dynamic resources). */
    id?: string;
    outputs: Record<string, unknown>;
}

interface State {
    resources: Record<string, StateEntry>;
}

type Connection = SshConnection;

const digest = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex");

function randomString(length: number, special: boolean): string {
    const alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + (special ? "!@#$%&*()-_=+[]{}<>:?" : "");
    return Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join("");
}

type DynamicProvider = Required<
    Pick<pulumi.dynamic.ResourceProvider, "create" | "read" | "diff" | "update" | "delete">
>;
const providers = new Map<string, DynamicProvider>();

/** The provider behind a dynamic resource, from its `__provider` text, as the engine's host loads it. */
function dynamicProvider(text: string): DynamicProvider {
    let p = providers.get(text);
    if (!p) {
        const requireFromString = require("require-from-string") as (code: string) => { handler(): DynamicProvider };
        p = requireFromString(text).handler();
        providers.set(text, p);
    }
    return p;
}

async function challtestsrv(base: string, op: string, body: unknown): Promise<void> {
    const res = await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`challtestsrv ${op}: ${res.status} ${await res.text()}`);
}

async function main(): Promise<void> {
    const request = JSON.parse(readFileSync(0, "utf8")) as EngineRequest;
    const state: State = existsSync(request.statePath)
        ? (JSON.parse(readFileSync(request.statePath, "utf8")) as State)
        : { resources: {} };
    const next: State = { resources: { ...state.resources } };
    const steps: StepRecord[] = [];
    const inflight: Promise<unknown>[] = [];
    const project = "matrix";
    const stack = "e2e";
    const urnOf = (type: string, name: string) => `${type}::${name}`;
    let seq = 0;

    if (request.mode === "destroy") {
        await destroy(request, state, steps);
        writeFileSync(request.statePath, JSON.stringify({ resources: {} }, null, 1), { mode: 0o600 });
        await new Promise((resolve) =>
            process.stdout.write(JSON.stringify({ steps, outputs: {} } satisfies EngineResult), resolve),
        );
        return;
    }

    pulumi.runtime.setAllConfig(request.config, request.secretKeys);
    await pulumi.runtime.setMocks(
        {
            newResource: (args) => {
                // Components and the Stack are the engine's bookkeeping only.
                if (!args.custom) return { id: `${args.name}-id`, state: args.inputs };
                const work = (async () => {
                    const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
                    const key = urnOf(args.type, args.name);
                    const prev = state.resources[key];
                    const d = digest(inputs);
                    const triggers = digest(inputs.triggers ?? null);
                    const step: StepRecord = {
                        name: args.name,
                        type: args.type,
                        action: "same",
                        start: Date.now(),
                        end: 0,
                    };
                    const keep = (outputs: Record<string, unknown>, extra: Partial<StateEntry> = {}) => {
                        next.resources[key] = {
                            type: args.type,
                            name: args.name,
                            digest: d,
                            triggers,
                            seq: ++seq,
                            outputs,
                            ...extra,
                        };
                    };
                    try {
                        if (args.type === "random:index/randomPassword:RandomPassword") {
                            const result =
                                prev && prev.digest === d
                                    ? String(prev.outputs.result)
                                    : randomString(Number(inputs.length ?? 16), inputs.special !== false);
                            step.action = prev?.digest === d ? "same" : prev ? "replace" : "create";
                            keep({ result });
                            return { id: args.name, state: { ...args.inputs, result: secretValue(result) } };
                        }
                        if (args.type === "cloudflare:index/dnsRecord:DnsRecord") {
                            const type = String(inputs.type);
                            await challtestsrv(request.challtestsrv, type === "AAAA" ? "add-aaaa" : "add-a", {
                                host: `${String(inputs.name)}.`,
                                addresses: [String(inputs.content)],
                            });
                            step.action = prev?.digest === d ? "same" : prev ? "update" : "create";
                            keep({}, { record: { name: String(inputs.name), type } });
                            return { id: `${args.name}-id`, state: args.inputs };
                        }
                        if (args.type.startsWith("pulumi-nodejs:dynamic")) {
                            const provider = dynamicProvider(String(inputs.__provider));
                            let olds = prev?.outputs;
                            if (prev && olds && (request.refresh || request.mode === "preview")) {
                                const read = await provider.read(prev.id!, olds);
                                const found = (read.props ?? {}) as Record<string, unknown>;
                                step.refreshed = Object.keys(found).filter(
                                    (k) => JSON.stringify(found[k]) !== JSON.stringify(olds![k]),
                                );
                                olds = found;
                            }
                            let id = prev?.id ?? "";
                            let outs: Record<string, unknown>;
                            if (!prev || !olds || request.mode === "recreate") {
                                step.action = "create";
                                if (request.mode === "preview") return { id: "", state: args.inputs };
                                const r = await provider.create(inputs);
                                id = r.id;
                                outs = r.outs as Record<string, unknown>;
                            } else if ((await provider.diff(id, olds, inputs)).changes) {
                                step.action = "update";
                                outs =
                                    request.mode === "preview"
                                        ? olds
                                        : ((await provider.update(id, olds, inputs)).outs as Record<string, unknown>);
                            } else {
                                outs = olds;
                            }
                            outs = { ...outs, __provider: inputs.__provider };
                            keep(outs, { id });
                            return { id, state: { ...args.inputs, ...outs } };
                        }
                        if (args.type === "command:remote:Command") {
                            const conn = inputs.connection as Connection;
                            const unchanged = prev !== undefined && prev.digest === d && request.mode !== "recreate";
                            if (request.mode === "preview") {
                                step.action = !prev ? "create" : unchanged ? "same" : "update";
                                if (prev) next.resources[key] = { ...prev, seq: ++seq };
                                return { id: `${args.name}-id`, state: { ...args.inputs, ...prev?.outputs } };
                            }
                            if (unchanged) {
                                step.action = "same";
                                next.resources[key] = { ...prev, seq: ++seq };
                                return { id: `${args.name}-id`, state: { ...args.inputs, ...prev.outputs } };
                            }
                            step.action = !prev ? "create" : prev.triggers !== triggers ? "replace" : "update";
                            if (request.mode === "recreate") step.action = "create";
                            const text = (v: unknown) => (typeof v === "string" ? v : undefined);
                            const script =
                                (step.action === "update" ? text(inputs.update) : undefined) ??
                                text(inputs.create) ??
                                "";
                            const res = await sshExec(conn, script, inputs.stdin as string | undefined);
                            step.stdout = res.stdout;
                            if (res.code !== 0) {
                                throw new Error(
                                    `${args.name} exited ${res.code}:\n${res.stderr.trim().split("\n").slice(-25).join("\n")}`,
                                );
                            }
                            if (step.action === "replace" && prev?.delete) await sshExec(conn, prev.delete);
                            const outputs = { stdout: res.stdout, stderr: res.stderr };
                            keep(outputs, {
                                delete: typeof inputs.delete === "string" ? inputs.delete : undefined,
                                connection: conn,
                            });
                            return { id: `${args.name}-id`, state: { ...args.inputs, ...outputs } };
                        }
                        // Any other custom resource: echo, as a plain mock would.
                        return { id: `${args.name}-id`, state: args.inputs };
                    } catch (err) {
                        step.action = "failed";
                        step.error = err instanceof Error ? err.message : String(err);
                        // A failed resource keeps its old state, as with the engine.
                        if (prev) next.resources[key] = prev;
                        else delete next.resources[key];
                        throw err;
                    } finally {
                        step.end = Date.now();
                        steps.push(step);
                    }
                })();
                inflight.push(work.catch(() => undefined));
                return work;
            },
            call: (args) => {
                throw new Error(`unexpected invoke ${args.token}`);
            },
        },
        project,
        stack,
        false,
    );

    const result: EngineResult = { steps, outputs: {} };
    // A failed step rejects promises the program never awaits; the engine reports, not crashes.
    process.on("unhandledRejection", (err) => {
        result.error ??= err instanceof Error ? err.message : String(err);
    });
    try {
        const outputs = await runStack();
        result.outputs = Object.fromEntries(Object.entries(outputs).map(([k, o]) => [k, unwrapSecrets(o.value)]));
    } catch (err) {
        result.error = err instanceof Error ? err.message : String(err);
    }
    // Let steps already running finish, as the engine does before it reports the failure.
    await Promise.all(inflight);
    if (request.mode !== "preview") writeFileSync(request.statePath, JSON.stringify(next, null, 1), { mode: 0o600 });
    // Flushed before the caller's process.exit (a pipe takes 64 kB at a time).
    await new Promise((resolve) => process.stdout.write(JSON.stringify(result), resolve));
}

/** Like `pulumi destroy`: every resource in state, dependents first, each deleted once. */
async function destroy(request: EngineRequest, state: State, steps: StepRecord[]): Promise<void> {
    const entries = Object.values(state.resources).sort((a, b) => b.seq - a.seq);
    for (const e of entries) {
        const step: StepRecord = { name: e.name, type: e.type, action: "delete", start: Date.now(), end: 0 };
        if (e.type === "command:remote:Command" && e.delete && e.connection) {
            const res = await sshExec(e.connection, e.delete);
            step.stdout = res.stdout;
            if (res.code !== 0) {
                step.action = "failed";
                step.error = `${e.name} delete exited ${res.code}: ${res.stderr}`;
            }
        } else if (e.type.startsWith("pulumi-nodejs:dynamic") && e.id !== undefined) {
            await dynamicProvider(String(e.outputs.__provider)).delete(e.id, e.outputs);
        } else if (e.record) {
            await challtestsrv(request.challtestsrv, e.record.type === "AAAA" ? "clear-aaaa" : "clear-a", {
                host: `${e.record.name}.`,
            });
        }
        step.end = Date.now();
        steps.push(step);
        if (step.action === "failed") throw new Error(step.error);
    }
}

if (require.main === module) {
    main().then(
        () => process.exit(0),
        (err: unknown) => {
            process.stderr.write(String(err instanceof Error ? err.stack : err));
            process.exit(1);
        },
    );
}
