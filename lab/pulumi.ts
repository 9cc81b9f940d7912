// The real Pulumi CLI, driven as a user drives it: a stack on a file backend with a passphrase,
// its settings in the stack file and `pulumi config set --secret` (value on stdin), and
// `pulumi preview` / `up` / `destroy` / `stack export`. What each run did is read from the
// engine's own events (`--json`): one step per resource with its operation, in sequence.
//
// The toolchain comes from `npm run tools:pulumi` (PULUMI_TOOLS, default .tools/pulumi).
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parse as parseYaml, stringify as toYaml } from "yaml";

const ROOT = path.resolve(__dirname, "..");

/** Pulumi's wire form of a secret: {[SECRET_SIG_KEY]: SECRET_SIG, value}. */
export const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
/** What a stack's project folder links to: the program exactly as a user's checkout has it. */
const PROGRAM_FILES = [
    "Pulumi.yaml",
    "package.json",
    "tsconfig.json",
    "tsconfig.pulumi.json",
    "index.ts",
    "config",
    "components",
    "lib",
    "render",
    "node_modules",
];

export interface PulumiTools {
    /** Folder with pulumi, the Node.js language host and the dynamic-provider shim. */
    bin: string;
    /** A PULUMI_HOME with the command and random providers installed. */
    home: string;
}

/**
 * The toolchain `npm run tools:pulumi` built ($PULUMI_TOOLS, default .tools/pulumi); or, when
 * there is none and `usePath` allows it, undefined: the `pulumi` a user installed, on PATH.
 */
export function pulumiTools(usePath = false): PulumiTools | undefined {
    const dir = process.env.PULUMI_TOOLS ?? path.join(ROOT, ".tools/pulumi");
    const tools = { bin: path.join(dir, "bin"), home: path.join(dir, "home") };
    if (existsSync(path.join(tools.bin, "pulumi"))) return tools;
    if (usePath && spawnSync("pulumi", ["version"]).status === 0) return undefined;
    throw new Error(`no Pulumi CLI in ${tools.bin}: run npm run tools:pulumi (PULUMI_TOOLS=${dir})`);
}

/** The resource operations that change something (what `preview` promises and `up` does). */
const CHANGING = new Set(["create", "update", "delete", "replace", "create-replacement", "delete-replaced"]);

/** A resource as `pulumi stack export` lists it (in dependency order). */
export interface StateResource {
    urn: string;
    /** The last part of the URN. */
    name: string;
    type: string;
    inputs: Record<string, unknown>;
    outputs: Record<string, unknown>;
}

/** A value from `pulumi stack export --show-secrets`, its secrets as plain values. */
function revealed(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(revealed);
    if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (SECRET_SIG_KEY in o && typeof o.plaintext === "string") return revealed(JSON.parse(o.plaintext));
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, revealed(x)]));
    }
    return v;
}

/** One resource's step in a run, from the engine's events. */
export interface Step {
    /** The resource's name (the last part of its URN). */
    name: string;
    type: string;
    urn: string;
    /** "same", "create", "update", "replace", "delete", "refresh", … */
    op: string;
    /** The properties the engine found different: an update's reasons, or what a refresh read back changed. */
    diffs: string[];
    /** Event sequence numbers: what started and ended before what. */
    startSeq: number;
    endSeq: number;
    /** Wall time (the engine's timestamps are whole seconds). */
    start: number;
    end: number;
    failed: boolean;
}

export interface Run {
    command: string;
    code: number;
    /** Every resource step, in the order they ended (failed ones included). */
    steps: Step[];
    /** Names of the resources this run changed (or, for a preview, would change), sorted. */
    changed: string[];
    /** The stack's outputs as the run left them (secrets as "[secret]"). */
    outputs: Record<string, unknown>;
    /** Error diagnostics the engine reported, and the CLI's stderr. */
    errors: string;
    /**
     * What the CLI printed (its events, the steps' output in them, stderr), less the engine's
     * debug diagnostics, which are in `debugOutput`: among them the Node.js SDK's log of every
     * RegisterResource response, secret outputs in plain text (Pulumi's own; docs/configuration.md: Secrets).
     */
    output: string;
    debugOutput: string;
    seconds: number;
    /** Seconds from the CLI's start until the program registered its first resource. */
    startupSeconds?: number;
}

interface EngineEvent {
    sequence: number;
    timestamp: number;
    resourcePreEvent?: { metadata: StepMetadata };
    resOutputsEvent?: { metadata: StepMetadata };
    resOpFailedEvent?: { metadata: StepMetadata };
    diagnosticEvent?: { urn?: string; severity: string; message: string };
}
interface StepMetadata {
    op: string;
    urn: string;
    type: string;
    diffs?: string[];
    old?: { outputs?: Record<string, unknown> } | null;
    new?: { outputs?: Record<string, unknown> } | null;
}

/** A refresh's findings: the outputs whose values it read back different (what --diff shows). */
function refreshedKeys(m: StepMetadata): string[] {
    const before = m.old?.outputs ?? {};
    const now = m.new?.outputs ?? {};
    return [...new Set([...Object.keys(before), ...Object.keys(now)])]
        .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(now[k]))
        .sort();
}

/** The JSON values in the CLI's output: a preview document, then one event per line. */
function jsonValues(text: string): unknown[] {
    const values: unknown[] = [];
    let depth = 0;
    let start = -1;
    let inString = false;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (inString) {
            if (c === "\\") i++;
            else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === "{") {
            if (depth++ === 0) start = i;
        } else if (c === "}" && --depth === 0) {
            values.push(JSON.parse(text.slice(start, i + 1)));
        }
    }
    return values;
}

/** A run's steps from its events. */
export function stepsOf(events: EngineEvent[]): Step[] {
    const started = new Map<string, EngineEvent>();
    const steps: Step[] = [];
    const step = (e: EngineEvent, m: StepMetadata, failed: boolean): Step => {
        const pre = started.get(m.urn);
        return {
            name: m.urn.split("::").pop()!,
            type: m.type,
            urn: m.urn,
            op: m.op,
            diffs: m.op === "refresh" ? refreshedKeys(m) : (m.diffs ?? []),
            startSeq: pre?.sequence ?? e.sequence,
            endSeq: e.sequence,
            start: pre?.timestamp ?? e.timestamp,
            end: e.timestamp,
            failed,
        };
    };
    for (const e of events) {
        if (e.resourcePreEvent) started.set(e.resourcePreEvent.metadata.urn, e);
        if (e.resOutputsEvent) steps.push(step(e, e.resOutputsEvent.metadata, false));
        if (e.resOpFailedEvent) steps.push(step(e, e.resOpFailedEvent.metadata, true));
    }
    return steps;
}

export interface CliOptions {
    /** Print the CLI's own progress lines as they come (the demo and a human watching). */
    echo?: boolean;
    /** Use the `pulumi` on PATH (and its plugins) when no toolchain was built. */
    usePath?: boolean;
}

/** A stack of this program, in a folder of its own (project links, backend, stack file). */
export class Stack {
    readonly project: string;
    readonly backend: string;
    private readonly passphrase: string;
    private readonly tools: PulumiTools | undefined;
    /** Secrets set so far (pulumi config set is skipped when the value is unchanged). */
    private readonly secretsSet = new Map<string, string>();

    constructor(
        readonly dir: string,
        readonly name: string,
        private readonly opts: CliOptions = {},
    ) {
        this.tools = pulumiTools(opts.usePath);
        this.project = path.join(dir, "project");
        this.backend = path.join(dir, "backend");
        const passphraseFile = path.join(dir, "passphrase");
        if (!existsSync(passphraseFile)) {
            mkdirSync(dir, { recursive: true });
            writeFileSync(passphraseFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
        }
        this.passphrase = readFileSync(passphraseFile, "utf8");
    }

    get stackFile(): string {
        return path.join(this.project, `Pulumi.${this.name}.yaml`);
    }

    /** The environment every CLI call gets: the toolchain, a private home, the file backend. */
    get env(): NodeJS.ProcessEnv {
        // The program runs on the `node` on PATH (package.json's engines), whichever CLI runs it.
        const toolchain = this.tools
            ? {
                  PATH: `${this.tools.bin}:${path.join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? ""}`,
                  PULUMI_HOME: this.tools.home,
                  PULUMI_SKIP_UPDATE_CHECK: "1",
                  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
              }
            : { PATH: `${path.join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? ""}` };
        return {
            ...process.env,
            ...toolchain,
            PULUMI_BACKEND_URL: `file://${this.backend}`,
            PULUMI_CONFIG_PASSPHRASE: this.passphrase,
            PULUMI_ENABLE_STREAMING_JSON_PREVIEW: "1",
            PULUMI_SKIP_CONFIRMATIONS: "true",
        };
    }

    /** Create the project folder (links to the program) and the stack, unless they exist. */
    async init(): Promise<void> {
        mkdirSync(this.project, { recursive: true });
        mkdirSync(this.backend, { recursive: true });
        for (const f of PROGRAM_FILES) {
            const link = path.join(this.project, f);
            if (!existsSync(link)) symlinkSync(path.join(ROOT, f), link);
        }
        const ls = await this.cli(["stack", "ls", "--json"], { stack: false });
        const stacks = JSON.parse(ls.stdout || "[]") as { name: string }[];
        if (!stacks.some((s) => s.name === this.name)) {
            await this.cli(["stack", "init", this.name, "--secrets-provider", "passphrase"], {
                check: true,
                stack: false,
            });
        }
    }

    /**
     * The stack's settings as a user keeps them: plain values in the stack file (objects as
     * YAML), secrets encrypted there by `pulumi config set --secret`, the value on stdin.
     */
    async configure(plain: Record<string, unknown>, secrets: Record<string, string>): Promise<void> {
        const doc = (existsSync(this.stackFile) ? parseYaml(readFileSync(this.stackFile, "utf8")) : {}) as {
            config?: Record<string, unknown>;
            encryptionsalt?: string;
        };
        const kept = Object.fromEntries(
            Object.entries(doc.config ?? {}).filter(([k]) => k in secrets && this.secretsSet.get(k) === secrets[k]),
        );
        writeFileSync(this.stackFile, toYaml({ ...doc, config: { ...plain, ...kept } }));
        for (const [key, value] of Object.entries(secrets)) {
            if (key in kept) continue;
            await this.cli(["config", "set", "--secret", key], { input: value, check: true });
            this.secretsSet.set(key, value);
        }
    }

    /** `pulumi preview` (refreshing first, as Pulumi.yaml asks), with the engine's events. */
    preview(opts: { refresh?: boolean; expectNoChanges?: boolean } = {}): Promise<Run> {
        return this.run("preview", [
            ...(opts.refresh === false ? ["--refresh=false"] : []),
            ...(opts.expectNoChanges ? ["--expect-no-changes"] : []),
        ]);
    }

    /** `pulumi up --yes`, with the engine's events. */
    up(opts: { refresh?: boolean; replace?: string[] } = {}): Promise<Run> {
        return this.run("up", [
            "--yes",
            "--skip-preview",
            ...(opts.refresh === false ? ["--refresh=false"] : []),
            ...(opts.replace ?? []).flatMap((n) => ["--replace", this.urn(n)]),
        ]);
    }

    /** A command's plain output, as a user reads it in a terminal or a CI log (no --json). */
    async text(command: "up" | "preview", args: string[] = []): Promise<{ code: number; output: string }> {
        const res = await this.cli([command, ...(command === "up" ? ["--yes", "--skip-preview"] : []), ...args]);
        return { code: res.code, output: `${res.stdout}\n${res.stderr}` };
    }

    /** `pulumi destroy --yes`, with the engine's events. */
    destroy(): Promise<Run> {
        return this.run("destroy", ["--yes", "--skip-preview"]);
    }

    /** The stack's state as `pulumi stack export` gives it (secrets encrypted unless asked). */
    async export(showSecrets = false): Promise<string> {
        return (await this.cli(["stack", "export", ...(showSecrets ? ["--show-secrets"] : [])], { check: true }))
            .stdout;
    }

    /** The resources in the stack's state, secrets in plain text (`pulumi stack export --show-secrets`). */
    async resources(): Promise<StateResource[]> {
        const state = JSON.parse(await this.export(true)) as { deployment: { resources?: StateResource[] } };
        return (state.deployment.resources ?? []).map((r) => ({
            ...r,
            name: r.urn.split("::").pop()!,
            inputs: revealed(r.inputs ?? {}) as Record<string, unknown>,
            outputs: revealed(r.outputs ?? {}) as Record<string, unknown>,
        }));
    }

    /** Where the file backend keeps the stack's state (what `pulumi stack export` prints, as stored). */
    get stateFile(): string {
        return path.join(this.backend, ".pulumi/stacks/matrix", `${this.name}.json`);
    }

    /** `pulumi stack output --json` (with --show-secrets when asked). */
    async outputs(showSecrets = false): Promise<Record<string, unknown>> {
        const out = await this.cli(["stack", "output", "--json", ...(showSecrets ? ["--show-secrets"] : [])], {
            check: true,
        });
        return JSON.parse(out.stdout) as Record<string, unknown>;
    }

    /** The URN of one of the program's resources, from the stack's state. */
    urn(name: string): string {
        const known = this.urns.get(name);
        if (!known) throw new Error(`no resource named ${name} in the last run of stack ${this.name}`);
        return known;
    }
    private urns = new Map<string, string>();

    private runs = 0;

    private async run(command: string, args: string[]): Promise<Run> {
        const start = Date.now();
        const res = await this.cli([command, "--json", ...args]);
        // Every run's events are kept beside the stack, for reading after a failure.
        mkdirSync(path.join(this.dir, "runs"), { recursive: true });
        writeFileSync(
            path.join(this.dir, "runs", `${String(++this.runs).padStart(2, "0")}-${command}.json`),
            res.stdout,
        );
        const values = jsonValues(res.stdout);
        const events = values.filter((v): v is EngineEvent => typeof v === "object" && v !== null && "sequence" in v);
        const isDebug = (v: unknown) => (v as EngineEvent).diagnosticEvent?.severity === "debug";
        const steps = stepsOf(events);
        for (const s of steps) this.urns.set(s.name, s.urn);
        const stackEvent = events
            .filter((e) => e.resOutputsEvent?.metadata.type === "pulumi:pulumi:Stack")
            .pop()?.resOutputsEvent;
        const errors = events
            .filter((e) => e.diagnosticEvent?.severity === "error")
            .map((e) => e.diagnosticEvent!.message)
            .join("");
        const firstResource = events.find(
            (e) => e.resourcePreEvent && e.resourcePreEvent.metadata.type !== "pulumi:pulumi:Stack",
        );
        const prelude = events[0];
        return {
            command: `pulumi ${command} ${args.join(" ")}`,
            code: res.code,
            steps,
            changed: [...new Set(steps.filter((s) => CHANGING.has(s.op)).map((s) => s.name))].sort(),
            outputs: stackEvent?.metadata.new?.outputs ?? {},
            errors: `${errors}${res.stderr}`,
            output: [...values.filter((v) => !isDebug(v)).map((v) => JSON.stringify(v)), res.stderr].join("\n"),
            debugOutput: values
                .filter(isDebug)
                .map((v) => JSON.stringify(v))
                .join("\n"),
            seconds: (Date.now() - start) / 1000,
            startupSeconds: firstResource && prelude ? firstResource.timestamp - prelude.timestamp : undefined,
        };
    }

    /** One CLI call in the stack's project folder; resolves with its output (rejects with `check`). */
    cli(
        args: string[],
        opts: { input?: string; check?: boolean; stack?: boolean } = {},
    ): Promise<{ code: number; stdout: string; stderr: string }> {
        const stack = opts.stack === false ? [] : ["--stack", this.name];
        return new Promise((resolve, reject) => {
            const child = spawn("pulumi", [...args, ...stack, "--non-interactive"], {
                cwd: this.project,
                env: this.env,
            });
            let stdout = "";
            let stderr = "";
            child.stdout.on("data", (d: Buffer) => {
                stdout += d.toString();
                if (this.opts.echo && !args.includes("--json")) process.stdout.write(d);
            });
            child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
            child.on("error", reject);
            child.on("close", (code) => {
                const r = { code: code ?? 1, stdout, stderr };
                if (opts.check && r.code !== 0) {
                    reject(new Error(`pulumi ${args.join(" ")} exited ${r.code}:\n${stderr}${stdout.slice(-2000)}`));
                } else resolve(r);
            });
            child.stdin.end(opts.input ?? "");
        });
    }
}
