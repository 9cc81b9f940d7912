// A file on the server as a resource whose state can be read back: a Pulumi dynamic provider
// that writes over SSH (content on stdin) and, on refresh, reads the file's SHA-256, mode and
// owner, so `pulumi preview --refresh` names a hand-edited file and `pulumi up --refresh` puts
// it back. Each write raises `generation`, which the step that restarts or reloads the service
// reading the file takes as input: a restored file restarts its own service and no other.
//
// The engine runs the provider from a serialized copy of `managedFileProvider` (Pulumi's closure
// serialization), so the provider uses only Node built-ins and the small helpers below.
//
// Which SSH connection: create and update use the one the program passes (the stack as it is now).
// Read (refresh) and delete see only what the state recorded, so they take the connection from
// the stack's current config when the engine hands it to the provider (`configure`), and fall
// back to the recorded one: a rotated SSH key works on the very next refresh.
import * as pulumi from "@pulumi/pulumi";
import { script, sha256, shq, writeFileFromStdin, type FileMode } from "../render/shell";
import { SSH_DEFAULTS, sshAddress, sshExec, type SshConnection } from "./ssh";

/** The stack config keys a host's connection is built from (e.g. matrix:machine, matrix:sshPrivateKey). */
export interface ConnectionConfig {
    /** Key of the machine object: {ipv4, sshHost?, sshPort?, sshUser?, sshHostKey?}. */
    machine: string;
    /** The machine object is this field of that key's object (matrix:database's `machine`). */
    field?: string;
    /** Key of the (secret) private key. */
    privateKey: string;
}

/** What the provider is given (inputs) — the content itself is never kept as an output. */
export interface ManagedFileInputs extends FileMode {
    connection: SshConnection;
    path: string;
    content: string;
    /** SHA-256 of `content`, so a preview shows digests rather than (possibly secret) content. */
    sha256: string;
    /** Where the stack's config keeps this host's connection (read and delete use the current one). */
    connectionConfig?: ConnectionConfig;
    /** Delete the file when the resource is deleted (destroy). Default: the file stays. */
    removeOnDelete?: boolean;
}

/** What the provider records (outputs) and what `read` finds on the server. */
export interface ManagedFileState extends FileMode {
    path: string;
    /** SHA-256 of the file, or "absent". */
    sha256: string;
    /** Writes so far; raised by every create/update. */
    generation: number;
    /** Kept (secret) so that `read` and `delete` reach the server even without the stack's config. */
    connection: SshConnection;
    connectionConfig?: ConnectionConfig;
    removeOnDelete?: boolean;
}

export const ABSENT = "absent";

/** "640", "0640" and "00640" are one mode. */
export function normalizeMode(mode: string): string {
    return parseInt(mode, 8).toString(8).padStart(4, "0");
}

/** The properties in which the file on the server (`actual`) differs from what the stack wants. */
export function fileDrift(actual: Partial<ManagedFileState>, wanted: ManagedFileInputs): string[] {
    const differs: string[] = [];
    if (actual.path !== wanted.path) differs.push("path");
    if (actual.sha256 !== wanted.sha256) differs.push("sha256");
    if (actual.mode === undefined || normalizeMode(actual.mode) !== normalizeMode(wanted.mode)) differs.push("mode");
    if (actual.owner !== wanted.owner) differs.push("owner");
    if (actual.group !== wanted.group) differs.push("group");
    return differs;
}

/** The remote script that prints "<sha256> <mode> <owner> <group>" or "absent". */
export function renderReadScript(path: string, opts: { user?: string } = {}): string {
    const p = shq(path);
    return script(
        [
            `if [ -f ${p} ]; then`,
            `  printf '%s %s\\n' "$(sha256sum < ${p} | cut -d' ' -f1)" "$(stat -c '%a %U %G' ${p})"`,
            `else echo ${ABSENT}; fi`,
        ],
        opts,
    );
}

/** The remote script that installs stdin at `path` atomically, with mode and owner. */
export function renderWriteScript(f: FileMode & { path: string }, opts: { user?: string } = {}): string {
    return script(writeFileFromStdin(f.path, { mode: f.mode, owner: f.owner, group: f.group }), opts);
}

/** Parses what renderReadScript printed. */
export function parseReadOutput(path: string, out: string): Omit<ManagedFileState, "generation" | "connection"> {
    const line = out.trim();
    if (line === ABSENT) return { path, sha256: ABSENT, mode: "", owner: "", group: "" };
    const [digest, mode, owner, group] = line.split(/\s+/);
    if (!digest || !/^[0-9a-f]{64}$/.test(digest) || !mode || !owner || !group) {
        throw new Error(`unexpected answer reading ${path}: ${JSON.stringify(line.slice(0, 200))}`);
    }
    return { path, sha256: digest, mode: normalizeMode(mode), owner, group };
}

/** One command over SSH with `stdin`; rejects with stderr's tail when it fails. */
async function ssh(conn: SshConnection, command: string, stdin: string): Promise<string> {
    const res = await sshExec(conn, command, stdin);
    if (res.code !== 0) {
        throw new Error(`ssh ${conn.host} exited ${res.code}: ${res.stderr.trim().split("\n").slice(-10).join("\n")}`);
    }
    return res.stdout;
}

async function readRemote(inputs: {
    connection: SshConnection;
    path: string;
}): Promise<Omit<ManagedFileState, "generation" | "connection">> {
    const out = await ssh(inputs.connection, renderReadScript(inputs.path, { user: inputs.connection.user }), "");
    return parseReadOutput(inputs.path, out);
}

async function writeRemote(inputs: ManagedFileInputs, generation: number): Promise<ManagedFileState> {
    if (sha256(inputs.content) !== inputs.sha256) throw new Error(`${inputs.path}: sha256 does not match the content`);
    await ssh(inputs.connection, renderWriteScript(inputs, { user: inputs.connection.user }), inputs.content);
    return {
        path: inputs.path,
        sha256: inputs.sha256,
        mode: normalizeMode(inputs.mode),
        owner: inputs.owner,
        group: inputs.group,
        generation,
        connection: inputs.connection,
        connectionConfig: inputs.connectionConfig,
        removeOnDelete: inputs.removeOnDelete ?? false,
    };
}

/** The remote script that removes the file (a missing one is fine). */
export function renderRemoveScript(path: string, opts: { user?: string } = {}): string {
    return script([`rm -f -- ${shq(path)}`], opts);
}

/** The connection the stack's config describes now, if it holds the keys `cc` names. */
export function connectionFromConfig(
    config: pulumi.dynamic.Config | undefined,
    cc: ConnectionConfig | undefined,
): SshConnection | undefined {
    const machineValue = cc && config?.get(cc.machine);
    const privateKey = cc && config?.get(cc.privateKey);
    if (!machineValue || !privateKey) return undefined;
    // Objects arrive as JSON text, as the program itself receives them.
    const parsed = JSON.parse(machineValue) as Record<string, unknown>;
    const machine = (cc.field ? parsed[cc.field] : parsed) as
        | { ipv4?: string; sshHost?: string; sshPort?: number | string; sshUser?: string; sshHostKey?: string }
        | undefined;
    if (!machine?.ipv4) return undefined;
    const host = sshAddress({ ...machine, ipv4: machine.ipv4 });
    return {
        host,
        port: Number(machine.sshPort ?? SSH_DEFAULTS.port),
        user: machine.sshUser ?? SSH_DEFAULTS.user,
        hostKey: machine.sshHostKey,
        privateKey,
    };
}

/** The provider the engine calls: create/update write, read reads back, diff compares, delete removes. */
export const managedFileProvider: pulumi.dynamic.ResourceProvider<ManagedFileInputs, ManagedFileState> & {
    /** The stack's config, when the engine gave it (configure). */
    stackConfig?: pulumi.dynamic.Config;
    /** The connection for reading or deleting a recorded file: the stack's current one when known. */
    currentConnection(props: Partial<ManagedFileState>): SshConnection | undefined;
} = {
    configure(req) {
        // The whole stack config, namespaced keys, secrets decrypted.
        this.stackConfig = req.config;
        return Promise.resolve();
    },
    currentConnection(props) {
        return connectionFromConfig(this.stackConfig, props.connectionConfig) ?? props.connection;
    },
    async create(inputs) {
        return { id: inputs.path, outs: await writeRemote(inputs, 1) };
    },
    async read(id, props) {
        // `props` are the recorded outputs (on refresh the engine passes nothing else).
        const connection = props ? this.currentConnection(props) : undefined;
        if (!props || !connection) return { id, props };
        const actual = await readRemote({ connection, path: props.path ?? id });
        return { id, props: { ...props, ...actual } };
    },
    diff(_id, olds, news) {
        return Promise.resolve({ changes: fileDrift(olds, news).length > 0 });
    },
    async update(_id, olds, news) {
        return { outs: await writeRemote(news, (olds.generation ?? 0) + 1) };
    },
    // Most files stay on destroy (docs/operations.md: Destroy); the step that owns the service stops it.
    async delete(id, props) {
        const connection = this.currentConnection(props);
        if (!props.removeOnDelete || !connection) return;
        await ssh(connection, renderRemoveScript(props.path ?? id, { user: connection.user }), "");
    },
};

export interface ManagedFileArgs {
    /** How to reach the server (Host.connection). */
    connection: pulumi.Input<SshConnection>;
    /** The stack config keys that connection comes from (Host.config). Default: none. */
    connectionConfig?: ConnectionConfig;
    /** Delete the file when the resource is deleted. Default: false (it stays). */
    removeOnDelete?: boolean;
    /** Absolute path on the server; its folder must exist. */
    path: pulumi.Input<string>;
    /** The file's content; may be a secret (it travels on stdin and is never an output). */
    content: pulumi.Input<string>;
    /** Octal mode, e.g. "0640". */
    mode: string;
    owner: string;
    group: string;
}

/** A file on the server that `pulumi refresh` can read back (sha256, mode, owner). */
export class ManagedFile extends pulumi.dynamic.Resource {
    declare public readonly path: pulumi.Output<string>;
    /** SHA-256 of the file as last written or read. */
    declare public readonly sha256: pulumi.Output<string>;
    /** Raised by every write: a restart/reload step that takes it re-runs after a restore. */
    declare public readonly generation: pulumi.Output<number>;

    constructor(name: string, args: ManagedFileArgs, opts?: pulumi.CustomResourceOptions) {
        const content = pulumi.output(args.content);
        super(
            managedFileProvider,
            name,
            {
                connection: args.connection,
                connectionConfig: args.connectionConfig,
                removeOnDelete: args.removeOnDelete ?? false,
                path: args.path,
                content,
                // A digest of a file whose secrets are 48 random characters reveals none of them.
                sha256: pulumi.unsecret(content.apply(sha256)),
                mode: args.mode,
                owner: args.owner,
                group: args.group,
                generation: undefined,
            },
            // A replacement writes the file after the old resource's delete, never before it.
            { ...opts, additionalSecretOutputs: ["connection"], deleteBeforeReplace: true },
            "matrix",
            "ManagedFile",
        );
    }
}
