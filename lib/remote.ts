// The one place remote commands and managed files are made: the shared SSH connection and the
// defaults every command gets.
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import type { FileMode } from "../render/shell";
import { ManagedFile, type ConnectionConfig } from "./managedFile";

/** How the program reaches a server. */
export interface Host {
    /** SSH settings shared by every command (the private key is a secret Output). */
    connection: command.types.input.remote.ConnectionArgs;
    /** Remote user name; scripts run through `sudo -n` when it is not root. */
    user: string;
    /**
     * The stack config keys the connection comes from. Managed files read the host back with
     * the stack's current settings, so a rotated SSH key works on the very next refresh.
     */
    config?: ConnectionConfig;
    /** What every step on the host waits for (its packages). Default: nothing. */
    prerequisites?: pulumi.Resource[];
}

export interface RemoteStep {
    /** The script (from render/); it must not contain secrets: it is visible in the process list. */
    create: pulumi.Input<string>;
    /** Secret material for the script, delivered on standard input. */
    stdin?: pulumi.Input<string>;
    /** Run on destroy; most steps leave the host as it is (docs/operations.md: Destroy). */
    delete?: pulumi.Input<string>;
}

/** A remote.Command with the program's defaults, as a child of `parent`. */
export function remoteStep(
    name: string,
    host: Host,
    step: RemoteStep,
    opts: pulumi.CustomResourceOptions,
): command.remote.Command {
    return new command.remote.Command(
        name,
        {
            connection: host.connection,
            create: step.create,
            stdin: step.stdin,
            delete: step.delete,
            // The previous stdout would travel as environment, which sshd drops unless AcceptEnv.
            addPreviousOutputInEnv: false,
            // Scripts fed secrets print none, but their stdout is not shown in any case; stderr
            // stays visible so a failure can be understood.
            logging: step.stdin !== undefined ? "stderr" : "stdoutAndStderr",
        },
        {
            ...opts,
            dependsOn: [...((opts.dependsOn as pulumi.Resource[] | undefined) ?? []), ...(host.prerequisites ?? [])],
            // Output is kept in state; a step fed secrets keeps it secret there too.
            additionalSecretOutputs: step.stdin !== undefined ? ["stdout", "stderr"] : undefined,
            // A delete undoes its create: on a replacement it must run before the new create, or
            // it would undo what the new one just did (a stopped Synapse, a deleted certificate).
            deleteBeforeReplace: true,
        },
    );
}

/** A file on the server that `pulumi refresh` reads back (lib/managedFile.ts), as a child of `parent`. */
export function remoteFile(
    name: string,
    host: Host,
    file: {
        path: pulumi.Input<string>;
        content: pulumi.Input<string>;
        /** Delete the file on destroy (a vhost, firewall rules); otherwise it stays. Default: false. */
        removeOnDelete?: boolean;
    } & FileMode,
    opts: pulumi.CustomResourceOptions,
): ManagedFile {
    const connection = pulumi.output(host.connection).apply((c) => ({
        host: c.host,
        port: c.port,
        user: c.user,
        privateKey: c.privateKey,
        hostKey: c.hostKey,
    }));
    return new ManagedFile(name, { connection, connectionConfig: host.config, ...file }, opts);
}

/**
 * What a restart/reload step takes from the files its service reads: each one's digest and write
 * generation, so both a config change and a restored hand edit re-run the step.
 */
export function filesRevision(files: ManagedFile[]): pulumi.Output<string> {
    return pulumi
        .all(files.map((f) => pulumi.all([f.path, f.sha256, f.generation])))
        .apply((parts) => parts.map(([path, digest, generation]) => `${path}:${digest}:${generation}`).join("\n"));
}
