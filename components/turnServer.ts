import * as pulumi from "@pulumi/pulumi";
import { mapInput, type PlainOrOutput } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    renderTurnConfig,
    renderTurnDirsScript,
    renderTurnDropIn,
    renderTurnServiceScript,
    TURN_FILE_MODES,
    TURN_PATHS,
} from "../render/turn";

export interface TurnServerArgs {
    host: Host;
    /** The homeserver host: the realm and the certificate's name. */
    realm: string;
    /** The machine's public IPv4. */
    externalIp: PlainOrOutput<string>;
    port: number;
    tlsPort: number;
    relayPorts: { min: number; max: number };
    /** The use-auth-secret Synapse derives credentials from (SynapseServer.turnSharedSecret). */
    sharedSecret: pulumi.Output<string>;
    /** The homeserver certificate's name once it is on the host (NginxProxy.certificates.homeserver). */
    certificateHost: pulumi.Input<string>;
}

/** coturn from the distribution, configured by managed files, with the homeserver's certificate. */
export class TurnServer extends pulumi.ComponentResource {
    constructor(name: string, args: TurnServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:TurnServer", name, {}, opts);
        const user = args.host.user;
        const dirs = remoteStep(`${name}-dirs`, args.host, renderTurnDirsScript({ user }), { parent: this });
        const file = (
            role: string,
            path: string,
            content: pulumi.Input<string>,
            mode: (typeof TURN_FILE_MODES)[keyof typeof TURN_FILE_MODES],
        ) =>
            remoteFile(
                `${name}-${role}`,
                args.host,
                { path, content, removeOnDelete: true, ...mode },
                { parent: this, dependsOn: [dirs] },
            );
        const config = file(
            "config",
            TURN_PATHS.config,
            pulumi.secret(
                args.sharedSecret.apply((sharedSecret) =>
                    mapInput(args.externalIp, (externalIp) =>
                        renderTurnConfig({
                            realm: args.realm,
                            externalIp,
                            port: args.port,
                            tlsPort: args.tlsPort,
                            relayPorts: args.relayPorts,
                            sharedSecret,
                        }),
                    ),
                ),
            ),
            TURN_FILE_MODES.config,
        );
        const dropIn = file("dropin", TURN_PATHS.dropIn, renderTurnDropIn(), TURN_FILE_MODES.dropIn);
        remoteStep(
            `${name}-service`,
            args.host,
            {
                create: pulumi
                    .all([filesRevision([config, dropIn]), args.certificateHost])
                    .apply(([revision, certificateHost]) =>
                        renderTurnServiceScript({ certificateHost, port: args.port, revision }, { user }),
                    ),
            },
            { parent: this, dependsOn: [config, dropIn] },
        );
        this.registerOutputs({});
    }
}
