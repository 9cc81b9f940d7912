// The e2e stand-in for the Pulumi engine: index.ts runs under Pulumi's mock runtime, and the
// mocks act for real. Each remote.Command runs its script over SSH on the test host (with its
// stdin), each RandomPassword draws crypto-random bytes, each Cloudflare DnsRecord becomes a
// record in pebble-challtestsrv. Order comes from the program alone: under mocks a resource is
// registered only once the ones it depends on have resolved.
//
// Like the engine it starts no new step once one has failed, and lets running ones finish.
// Like the engine it keeps a state file (resource → input digest, outputs): a later run reuses
// the stored random values and runs a command only when its inputs changed ("update", or
// "replace" when its triggers changed), or every create again with mode "recreate".
//
//   node --import tsx tests/e2e/engine.ts < request.json > result.json
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomInt } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { sshExec, type SshConnection } from "../../lib/ssh";
import { runStack, SECRET_SIG, SECRET_SIG_KEY, secretValue, unwrapSecrets } from "../harness/stack";

const isSecret = (v: unknown) =>
    typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;

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
    stderr?: string;
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
    /** Outputs kept encrypted in the state file, as Pulumi keeps secret outputs. */
    secretOutputs?: string[];
}

interface State {
    resources: Record<string, StateEntry>;
    /** The stack's outputs (secret ones encrypted). */
    stackOutputs?: Record<string, unknown>;
}

// The state file keeps secrets the way Pulumi's checkpoints do: each secret value replaced by
// {sig: secret, ciphertext}, encrypted with the stack's key (here a random key file beside the
// state, like a passphrase). What the program does not mark secret is stored in plain text, so a
// scan of this file finds every secret the program forgot to mark.
function stateKey(statePath: string): Buffer {
    const file = `${statePath}.key`;
    if (!existsSync(file)) writeFileSync(file, randomBytes(32), { mode: 0o600 });
    return readFileSync(file);
}

function seal(key: Buffer, value: unknown): Record<string, string> {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    const ct = Buffer.concat([cipher.update(JSON.stringify(value), "utf8"), cipher.final()]);
    return {
        [SECRET_SIG_KEY]: SECRET_SIG,
        ciphertext: Buffer.concat([iv, cipher.getAuthTag(), ct]).toString("base64"),
    };
}

function unseal(key: Buffer, value: unknown): unknown {
    const v = value as Record<string, string> | undefined;
    if (!v || typeof v !== "object" || v[SECRET_SIG_KEY] !== SECRET_SIG || typeof v.ciphertext !== "string") {
        return value;
    }
    const raw = Buffer.from(v.ciphertext, "base64");
    const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return JSON.parse(Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8"));
}

/** Reads the state file, secrets decrypted. */
export function readState(statePath: string): State {
    if (!existsSync(statePath)) return { resources: {} };
    const key = stateKey(statePath);
    const stored = JSON.parse(readFileSync(statePath, "utf8")) as State;
    for (const e of Object.values(stored.resources)) {
        e.outputs = Object.fromEntries(Object.entries(e.outputs).map(([k, v]) => [k, unseal(key, v)]));
        if (e.connection) e.connection = unseal(key, e.connection) as Connection;
    }
    if (stored.stackOutputs) {
        stored.stackOutputs = Object.fromEntries(
            Object.entries(stored.stackOutputs).map(([k, v]) => [k, unseal(key, v)]),
        );
    }
    return stored;
}

function writeState(statePath: string, state: State, secretStackOutputs: string[] = []): void {
    const key = stateKey(statePath);
    const stored: State = {
        resources: Object.fromEntries(
            Object.entries(state.resources).map(([k, e]) => [
                k,
                {
                    ...e,
                    outputs: Object.fromEntries(
                        Object.entries(e.outputs).map(([name, v]) => [
                            name,
                            e.secretOutputs?.includes(name) ? seal(key, v) : v,
                        ]),
                    ),
                    // The SSH key lives in the connection: always secret.
                    connection: e.connection ? (seal(key, e.connection) as unknown as Connection) : undefined,
                },
            ]),
        ),
        stackOutputs: Object.fromEntries(
            Object.entries(state.stackOutputs ?? {}).map(([k, v]) => [
                k,
                secretStackOutputs.includes(k) ? seal(key, v) : v,
            ]),
        ),
    };
    writeFileSync(statePath, JSON.stringify(stored, null, 1), { mode: 0o600 });
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

/** A request to pebble-challtestsrv's management API (add-a, clear-a, ...). */
export async function challtestsrv(base: string, op: string, body: unknown): Promise<void> {
    const res = await fetch(`${base}/${op}`, { method: "POST", body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`challtestsrv ${op}: ${res.status} ${await res.text()}`);
}

async function main(): Promise<void> {
    const request = JSON.parse(readFileSync(0, "utf8")) as EngineRequest;
    const state = readState(request.statePath);
    const next: State = { resources: { ...state.resources } };
    const steps: StepRecord[] = [];
    const inflight: Promise<unknown>[] = [];
    let halted: string | undefined;
    const project = "matrix";
    const stack = "e2e";
    const urnOf = (type: string, name: string) => `${type}::${name}`;
    const additionalSecretOutputs = new Map<string, string[]>();
    let seq = 0;

    if (request.mode === "destroy") {
        await destroy(request, state, steps);
        writeState(request.statePath, { resources: {} });
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
                // After a failure the engine starts no new step (the state keeps the old entry).
                if (halted !== undefined) return Promise.reject(new Error(`${args.name}: not run, ${halted} failed`));
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
                    // Secret outputs, by the engine's rules: those the resource asks for
                    // (additionalSecretOutputs), those named like a secret input, and the
                    // random provider's result.
                    const secretOutputs = [
                        ...(additionalSecretOutputs.get(key) ?? []),
                        ...Object.keys(args.inputs).filter((k) => isSecret(args.inputs[k])),
                        ...(args.type === "random:index/randomPassword:RandomPassword" ? ["result"] : []),
                    ];
                    /** Outputs as the program sees them: the secret ones marked secret. */
                    const asState = (outputs: Record<string, unknown> = {}): Record<string, unknown> => ({
                        ...(args.inputs as Record<string, unknown>),
                        ...Object.fromEntries(
                            Object.entries(outputs).map(([k, v]) => [
                                k,
                                secretOutputs.includes(k) && !isSecret(v) ? secretValue(v) : v,
                            ]),
                        ),
                    });
                    const keep = (outputs: Record<string, unknown>, extra: Partial<StateEntry> = {}) => {
                        next.resources[key] = {
                            type: args.type,
                            name: args.name,
                            digest: d,
                            triggers,
                            seq: ++seq,
                            outputs,
                            secretOutputs,
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
                            return { id, state: asState(outs) };
                        }
                        if (args.type === "command:remote:Command") {
                            const conn = inputs.connection as Connection;
                            const unchanged = prev !== undefined && prev.digest === d && request.mode !== "recreate";
                            if (request.mode === "preview") {
                                step.action = !prev ? "create" : unchanged ? "same" : "update";
                                if (prev) next.resources[key] = { ...prev, seq: ++seq };
                                return { id: `${args.name}-id`, state: asState(prev?.outputs) };
                            }
                            if (unchanged) {
                                step.action = "same";
                                next.resources[key] = { ...prev, seq: ++seq };
                                return { id: `${args.name}-id`, state: asState(prev.outputs) };
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
                            step.stderr = res.stderr;
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
                            return { id: `${args.name}-id`, state: asState(outputs) };
                        }
                        // Any other custom resource: echo, as a plain mock would.
                        return { id: `${args.name}-id`, state: args.inputs };
                    } catch (err) {
                        step.action = "failed";
                        step.error = err instanceof Error ? err.message : String(err);
                        halted ??= args.name;
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

    // additionalSecretOutputs travel in the registration request, not in the mocks' arguments.
    type Req = { getType(): string; getName(): string; getAdditionalsecretoutputsList(): string[] };
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource(req: Req, cb: (...a: unknown[]) => void): void;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, cb) => {
        additionalSecretOutputs.set(urnOf(req.getType(), req.getName()), req.getAdditionalsecretoutputsList());
        register(req, cb);
    };

    const result: EngineResult = { steps, outputs: {} };
    // A failed step rejects promises the program never awaits; the engine reports, not crashes.
    process.on("unhandledRejection", (err) => {
        result.error ??= err instanceof Error ? err.message : String(err);
    });
    let secretStackOutputs: string[] = [];
    try {
        const outputs = await runStack();
        result.outputs = Object.fromEntries(Object.entries(outputs).map(([k, o]) => [k, unwrapSecrets(o.value)]));
        secretStackOutputs = Object.entries(outputs)
            .filter(([, o]) => o.secret)
            .map(([k]) => k);
        next.stackOutputs = result.outputs;
    } catch (err) {
        result.error = err instanceof Error ? err.message : String(err);
    }
    // Let steps already running finish, as the engine does before it reports the failure.
    for (let settled = -1; settled !== inflight.length;) {
        settled = inflight.length;
        await Promise.all(inflight);
    }
    if (request.mode !== "preview") writeState(request.statePath, next, secretStackOutputs);
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
