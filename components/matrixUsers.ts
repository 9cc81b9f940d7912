import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { after } from "../lib/order";
import { remoteStep, type Host } from "../lib/remote";
import { renderMasUserScript } from "../render/mas";
import { renderUserScript } from "../render/synapse";

export interface MatrixUsersArgs {
    /** The server and how to reach it. */
    host: Host;
    /** Accounts to create: the localpart and whether it is a server admin. */
    users: { name: string; admin: boolean }[];
    /** Synapse's loopback URL (SynapseServer.localUrl): accounts wait for a healthy Synapse. */
    synapseUrl: pulumi.Input<string>;
    /** Matrix Authentication Service holds the accounts (matrix:auth): made through its admin API. */
    auth?: boolean;
}

/**
 * Matrix accounts declared in the stack, each created once through the shared-secret admin API on
 * the host (MAS's admin API with matrix:auth), each with a generated password kept as a secret output.
 */
export class MatrixUsers extends pulumi.ComponentResource {
    /** Localpart → initial password (secret). */
    public readonly passwords: pulumi.Output<Record<string, string>>;

    constructor(name: string, args: MatrixUsersArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:MatrixUsers", name, {}, opts);
        const user = args.host.user;
        const entries = args.users.map((u) => {
            const password = pulumi.secret(
                new random.RandomPassword(
                    `${name}-${u.name}-password`,
                    { length: 32, special: false },
                    { parent: this },
                ).result,
            );
            const step = remoteStep(
                `${name}-${u.name}`,
                args.host,
                {
                    // The URL only orders this after Synapse answers; the script talks to it on the host.
                    create: pulumi
                        .output(args.synapseUrl)
                        .apply(() => (args.auth ? renderMasUserScript(u, { user }) : renderUserScript(u, { user }))),
                    stdin: password,
                },
                { parent: this },
            );
            return after(step, password).apply((pw) => [u.name, pw] as const);
        });
        this.passwords = pulumi.secret(pulumi.all(entries).apply((e) => Object.fromEntries(e)));
        this.registerOutputs({ passwords: this.passwords });
    }
}
