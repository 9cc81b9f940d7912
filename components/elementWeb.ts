import * as pulumi from "@pulumi/pulumi";
import { after } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    elementFiles,
    ELEMENT_FILE_MODE,
    ELEMENT_PATHS,
    renderElementConfig,
    renderElementDataScript,
    renderElementReleaseScript,
    renderElementSite,
    renderElementSiteScript,
} from "../render/element";
import { renderSitesDeleteScript } from "../render/nginx";

export interface ElementWebArgs {
    /** The server and how to reach it. */
    host: Host;
    /**
     * Host name Element is served on (NginxProxy.certificates.element): its vhost waits for that
     * certificate and the Matrix vhosts; the download does not.
     */
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
    /** Brand shown in the UI. */
    brand: pulumi.Input<string>;
    /** Hide the "other homeserver" option at login. */
    disableCustomUrls: pulumi.Input<boolean>;
    /** Offer "Create Account" (the homeserver's registration is open). */
    registration: pulumi.Input<boolean>;
    /** Listen on IPv6 too. */
    ipv6: boolean;
    /** On destroy, delete the releases too (the vhost always goes). */
    purgeOnDestroy: boolean;
}

/**
 * A pinned, checksum-verified Element Web release in its own folder, its config.json pointing at
 * the homeserver, served on its own host name by its own nginx vhost.
 */
export class ElementWeb extends pulumi.ComponentResource {
    /** https://<elementHost>, resolved once the vhost is live (known in a preview). */
    public readonly url: pulumi.Output<string>;

    constructor(name: string, args: ElementWebArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:ElementWeb", name, {}, opts);
        const user = args.host.user;
        const ipv6 = args.ipv6;
        const release = pulumi.all([args.version, args.sha256]).apply(([version, sha256]) => ({ version, sha256 }));

        const data = remoteStep(
            `${name}-data`,
            args.host,
            renderElementDataScript({ purge: args.purgeOnDestroy }, { user }),
            { parent: this },
        );
        // Nothing of the homeserver's is needed to fetch and unpack a release: it runs from the start.
        const download = remoteStep(
            `${name}-release`,
            args.host,
            {
                create: pulumi
                    .all([release, args.url])
                    .apply(([r, url]) => renderElementReleaseScript({ ...r, url }, { user })),
            },
            { parent: this, dependsOn: [data] },
        );
        // config.json and the vhost are resources `pulumi refresh` can read back (drift). The
        // config lives in the release's folder, so a new release (or a new tarball of the same
        // version) writes its own.
        const paths = release.apply(elementFiles);
        const config = remoteFile(
            `${name}-config-json`,
            args.host,
            {
                path: paths.config,
                content: pulumi
                    .all([args.serverName, args.homeserverHost, args.brand, args.disableCustomUrls, args.registration])
                    .apply(([serverName, homeserverHost, brand, disableCustomUrls, registration]) =>
                        renderElementConfig({ serverName, homeserverHost, brand, disableCustomUrls, registration }),
                    ),
                ...ELEMENT_FILE_MODE,
            },
            { parent: this, dependsOn: [download] },
        );
        const siteFile = remoteFile(
            `${name}-vhost`,
            args.host,
            {
                path: paths.site,
                content: pulumi
                    .output(args.elementHost)
                    .apply((elementHost) => renderElementSite({ elementHost, ipv6 })),
                removeOnDelete: true,
                ...ELEMENT_FILE_MODE,
            },
            { parent: this },
        );
        const site = remoteStep(
            `${name}-site`,
            args.host,
            {
                delete: renderSitesDeleteScript({ disable: [ELEMENT_PATHS.site] }, { user }),
                create: pulumi
                    .all([release, filesRevision([siteFile])])
                    .apply(([r, revision]) => renderElementSiteScript({ ...r, revision }, { user })),
            },
            { parent: this, dependsOn: [download, config] },
        );
        this.url = after(
            site,
            pulumi.output(args.elementHost).apply((host) => `https://${host}`),
        );
        this.registerOutputs({ url: this.url });
    }
}
