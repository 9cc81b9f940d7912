import * as pulumi from "@pulumi/pulumi";
import { remoteStep, type Host } from "../lib/remote";
import { renderPackagesScript } from "../render/packages";

export interface HostPackagesArgs {
    /** The server and how to reach it. */
    host: Host;
    /** Debian packages every component on the host needs (render/packages.ts hostPackages). */
    packages: string[];
    /**
     * What the install (and so every step on the host) waits for: the preflight of a host whose
     * address another resource gives; when it fails, nothing on the host is touched. Default: none.
     */
    waitFor?: pulumi.Output<unknown>;
}

/**
 * Every Debian package the host needs, in one apt run that the other steps wait for: one download
 * and dpkg pass instead of each install step's in turn.
 */
export class HostPackages extends pulumi.ComponentResource {
    /** The step the host's other steps wait for. */
    public readonly installed: pulumi.Resource;

    constructor(name: string, args: HostPackagesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:HostPackages", name, {}, opts);
        const script = renderPackagesScript(args.packages, { user: args.host.user });
        this.installed = remoteStep(
            `${name}-install`,
            args.host,
            { create: args.waitFor ? pulumi.all([args.waitFor, script]).apply(([, s]) => s) : script },
            { parent: this },
        );
        this.registerOutputs({});
    }
}
