import * as pulumi from "@pulumi/pulumi";
import { after, mapInput, type PlainOrOutput } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    FIREWALL_FILE_MODE,
    FIREWALL_PATHS,
    renderFirewallApplyScript,
    renderFirewallDeleteScript,
    renderFirewallInstallDeleteScript,
    renderFirewallInstallScript,
    renderFirewallRules,
    type SourcedPort,
} from "../render/firewall";

export interface HostFirewallArgs {
    /** The server and how to reach it. */
    host: Host;
    /** Inbound TCP ports to let in (SSH's included); everything else inbound is dropped. */
    tcpPorts: pulumi.Input<number[]>;
    /** Inbound UDP ports and ranges ([first, last]) to let in (calls). Default: none. */
    udpPorts?: (number | [number, number])[];
    /** TCP ports let in from one address only (PostgreSQL for the Synapse host). Default: none. */
    sourcedTcpPorts?: PlainOrOutput<SourcedPort[]>;
}

/**
 * An nftables table of the program's own that lets in only the given TCP ports (plus loopback,
 * ICMP and established connections), loaded at boot by a systemd unit.
 */
export class HostFirewall extends pulumi.ComponentResource {
    /** The ports let in, resolved once the rules are loaded (known in a preview). */
    public readonly tcpPorts: pulumi.Output<number[]>;
    /** The UDP ports and ranges let in, as "3478" or "49152-49251", resolved like tcpPorts. */
    public readonly udpPorts: pulumi.Output<string[]>;

    constructor(name: string, args: HostFirewallArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:HostFirewall", name, {}, opts);
        const user = args.host.user;
        const install = remoteStep(
            `${name}-install`,
            args.host,
            { create: renderFirewallInstallScript({ user }), delete: renderFirewallInstallDeleteScript({ user }) },
            { parent: this },
        );
        const rules = remoteFile(
            `${name}-rules`,
            args.host,
            {
                path: FIREWALL_PATHS.rules,
                content: pulumi
                    .output(args.tcpPorts)
                    .apply(
                        (tcpPorts) =>
                            mapInput(args.sourcedTcpPorts, (sourced) =>
                                renderFirewallRules({ tcpPorts, udpPorts: args.udpPorts, sourced }),
                            ) as string /* an Output here is flattened by apply */,
                    ),
                removeOnDelete: true,
                ...FIREWALL_FILE_MODE,
            },
            { parent: this, dependsOn: [install] },
        );
        const apply = remoteStep(
            `${name}-apply`,
            args.host,
            {
                create: filesRevision([rules]).apply((revision) => renderFirewallApplyScript({ revision }, { user })),
                delete: renderFirewallDeleteScript({ user }),
            },
            { parent: this, dependsOn: [install] },
        );
        this.tcpPorts = after(apply, args.tcpPorts);
        this.udpPorts = after(
            apply,
            (args.udpPorts ?? []).map((p) => (Array.isArray(p) ? `${p[0]}-${p[1]}` : `${p}`)),
        );
        this.registerOutputs({ tcpPorts: this.tcpPorts, udpPorts: this.udpPorts });
    }
}
