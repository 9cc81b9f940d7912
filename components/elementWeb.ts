import * as pulumi from "@pulumi/pulumi";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    elementFiles,
    ELEMENT_FILE_MODE,
    renderElementConfig,
    renderElementReleaseScript,
    renderElementSite,
    renderElementSiteDeleteScript,
    renderElementSiteScript,
} from "../render/element";

export interface ElementWebArgs {
    /** The server and how to reach it. */
    host: Host;
    /** Host name Element is served on (NginxProxy.certificates.element: waits for its certificate). */
    elementHost: pulumi.Input<string>;
    /** The Matrix server name shown at login. */
    serverName: pulumi.Input<string>;
    /** The homeserver host; config.json's base_url is https://<homeserverHost>. */
    homeserverHost: pulumi.Input<string>;
    /** Element Web release, e.g. "1.12.29". */
    version: pulumi.Input<string>;
    /** URL of the release tarball. */
    url: pulumi.Input<string>;
    /** SHA-256 of the tarball; checked before anything is extracted. */
    sha256: pulumi.Input<string>;
    /** Brand shown in the UI. Default: "Element". */
    brand?: pulumi.Input<string>;
    /** Hide the "other homeserver" option at login. Default: false. */
    disableCustomUrls?: pulumi.Input<boolean>;
    /** Listen on IPv6 too. Default: false. */
    ipv6?: boolean;
    /** On destroy, delete the releases too (the vhost always goes). Default: false. */
    purgeOnDestroy?: boolean;
}

/**
 * A pinned, checksum-verified Element Web release in a versioned folder, its config.json
 * pointing at the homeserver, served on its own host name by its own nginx vhost.
 */
export class ElementWeb extends pulumi.ComponentResource {
    /** https://<elementHost>, resolved once the vhost is live. */
    public readonly url: pulumi.Output<string>;

    constructor(name: string, args: ElementWebArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:ElementWeb", name, {}, opts);
        const user = args.host.user;
        const ipv6 = args.ipv6 ?? false;

        const release = remoteStep(
            `${name}-release`,
            args.host,
            {
                create: pulumi
                    .all([args.version, args.url, args.sha256])
                    .apply(([version, url, sha256]) => renderElementReleaseScript({ version, url, sha256 }, { user })),
            },
            { parent: this },
        );
        // config.json and the vhost are resources `pulumi refresh` can read back (drift).
        const paths = pulumi.output(args.version).apply(elementFiles);
        const config = remoteFile(
            `${name}-config-json`,
            args.host,
            {
                path: paths.config,
                content: pulumi
                    .all([
                        args.serverName,
                        args.homeserverHost,
                        args.brand ?? "Element",
                        args.disableCustomUrls ?? false,
                    ])
                    .apply(([serverName, homeserverHost, brand, disableCustomUrls]) =>
                        renderElementConfig({ serverName, homeserverHost, brand, disableCustomUrls }),
                    ),
                ...ELEMENT_FILE_MODE,
            },
            { parent: this, dependsOn: [release] },
        );
        const siteFile = remoteFile(
            `${name}-vhost`,
            args.host,
            {
                path: paths.site,
                content: pulumi
                    .output(args.elementHost)
                    .apply((elementHost) => renderElementSite({ elementHost, ipv6 })),
                ...ELEMENT_FILE_MODE,
            },
            { parent: this, dependsOn: [release] },
        );
        const site = remoteStep(
            `${name}-site`,
            args.host,
            {
                delete: renderElementSiteDeleteScript({ purge: args.purgeOnDestroy ?? false }, { user }),
                create: pulumi
                    .all([args.version, filesRevision([siteFile])])
                    .apply(([version, revision]) => renderElementSiteScript({ version, revision }, { user })),
            },
            { parent: this, dependsOn: [release, config] },
        );
        this.url = pulumi.all([site.stdout, args.elementHost]).apply(([, host]) => `https://${host}`);
        this.registerOutputs({ url: this.url });
    }
}
