import * as pulumi from "@pulumi/pulumi";
import type { SupportSettings } from "../render/wellknown";
import { after } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    NGINX_PATHS,
    renderAcmeAccountScript,
    renderApexSite,
    renderCertificateDeleteScript,
    renderCertificateScript,
    renderHomeserverSite,
    renderNginxInstallScript,
    renderSitesDeleteScript,
    renderSitesScript,
    SITE_FILE_MODE,
} from "../render/nginx";
import { renderNginxUpstreams, WORKER_PATHS, type UpstreamLayout } from "../render/workers";

/** The names that get a certificate; `apex` only when this nginx serves the apex. */
export interface CertificateHosts<T> {
    homeserver: T;
    element: T;
    apex?: T;
}

export interface NginxProxyArgs {
    /** The server and how to reach it. */
    host: Host;
    /** The Matrix server name; with delegation "apex" its vhost serves /.well-known/matrix. */
    domain: pulumi.Input<string>;
    /** Host name of the homeserver vhost. */
    homeserverHost: pulumi.Input<string>;
    /**
     * "apex": this nginx serves the apex well-known documents; "external": someone else does;
     * "none": federation on port 8448 of the homeserver host (which equals the domain).
     */
    delegation: "apex" | "external" | "none";
    /**
     * Names that get a certificate, keyed by role (`homeserver`, `element`, `apex`). Pass
     * DnsRecords' outputs so no certificate is requested before its name resolves.
     */
    certificateHosts: CertificateHosts<pulumi.Input<string>>;
    /** Listen on IPv6 too (the server has an AAAA record). */
    ipv6: boolean;
    /** nginx client_max_body_size; equal to Synapse's max_upload_size. */
    maxUploadSize: pulumi.Input<string>;
    /** /.well-known/matrix/support, served beside the other well-known documents. Default: none. */
    support?: SupportSettings;
    /**
     * MatrixRTC (MatrixRtc.serviceUrl): its services behind /livekit/ on the homeserver host and
     * its focus in the client well-known, once both answer. Default: none.
     */
    rtc?: pulumi.Input<{ serviceUrl: string } | undefined>;
    /**
     * Matrix Authentication Service (MatrixAuth.ready): /auth/ and the compatibility routes on the
     * homeserver host, once it answers. Default: none.
     */
    auth?: pulumi.Input<boolean>;
    /**
     * Where each Synapse process listens (SynapseServer.upstreams): the sites wait for a healthy
     * Synapse and its workers.
     */
    upstreams: pulumi.Input<UpstreamLayout>;
    /** ACME account and directory. */
    acme: {
        /** Contact e-mail for the account. */
        email: pulumi.Input<string>;
        /** ACME directory URL (Let's Encrypt production, staging, or a private CA). */
        directoryUrl: pulumi.Input<string>;
        /** PEM bundle that signs a private ACME server's TLS certificate. Default: none. */
        caBundle?: pulumi.Input<string | undefined>;
    };
}

/**
 * nginx in front of Synapse: an HTTP-only ACME webroot first, one certbot certificate per name
 * (HTTP-01), then the TLS vhosts: the apex well-known documents and the homeserver proxy.
 */
export class NginxProxy extends pulumi.ComponentResource {
    /**
     * Role → host name, resolved once that name's certificate is on the host and the Matrix
     * vhosts are live (known in a preview): what a vhost added later (Element's) waits for.
     */
    public readonly certificates: CertificateHosts<pulumi.Output<string>>;
    /** The homeserver's public URL, resolved once the Matrix vhosts are live (known in a preview). */
    public readonly homeserverUrl: pulumi.Output<string>;

    constructor(name: string, args: NginxProxyArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:NginxProxy", name, {}, opts);
        const user = args.host.user;
        const ipv6 = args.ipv6;
        const named = Object.entries(args.certificateHosts)
            .filter((e): e is [keyof CertificateHosts<unknown>, pulumi.Input<string>] => e[1] !== undefined)
            .sort(([a], [b]) => a.localeCompare(b));
        const hosts = pulumi.all(named.map(([, host]) => pulumi.output(host)));

        const install = remoteStep(
            `${name}-install`,
            args.host,
            {
                // The port-80 ACME site is this step's own file.
                delete: renderSitesDeleteScript(
                    {
                        disable: [NGINX_PATHS.acmeSite],
                        files: [`${NGINX_PATHS.sitesAvailable}/${NGINX_PATHS.acmeSite}`],
                    },
                    { user },
                ),
                create: pulumi
                    .all([hosts, args.acme.caBundle])
                    .apply(([h, acmeCaBundle]) => renderNginxInstallScript({ hosts: h, ipv6, acmeCaBundle }, { user })),
            },
            { parent: this },
        );
        const acme = pulumi
            .all([args.acme.email, args.acme.directoryUrl, args.acme.caBundle])
            .apply(([email, directoryUrl, caBundle]) => ({ email, directoryUrl, caBundle: caBundle !== undefined }));
        const account = remoteStep(
            `${name}-acme-account`,
            args.host,
            { create: acme.apply((a) => renderAcmeAccountScript(a, { user })) },
            { parent: this, dependsOn: [install] },
        );

        const certificateSteps = named.map(
            ([role, certificateHost]) =>
                [
                    role,
                    remoteStep(
                        `${name}-certificate-${role}`,
                        args.host,
                        {
                            delete: pulumi
                                .output(certificateHost)
                                .apply((h) => renderCertificateDeleteScript(h, { user })),
                            // The e-mail belongs to the account step; leaving it out here keeps an
                            // e-mail change from touching the certificates.
                            create: pulumi
                                .all([acme, certificateHost])
                                .apply(([a, host]) =>
                                    renderCertificateScript(
                                        { directoryUrl: a.directoryUrl, caBundle: a.caBundle, host },
                                        { user },
                                    ),
                                ),
                        },
                        { parent: this, dependsOn: [account] },
                    ),
                ] as const,
        );
        const certificates = certificateSteps.map(([, step]) => step);

        // Each vhost file is a resource `pulumi refresh` can read back (drift); enabled once every
        // certificate it names is on the host.
        const siteFile = (role: string, site: string, content: pulumi.Input<string>) =>
            remoteFile(
                `${name}-${role}-vhost`,
                args.host,
                { path: `${NGINX_PATHS.sitesAvailable}/${site}`, content, removeOnDelete: true, ...SITE_FILE_MODE },
                { parent: this, dependsOn: certificates },
            );
        const siteFiles = [
            siteFile(
                "homeserver",
                NGINX_PATHS.homeserverSite,
                pulumi
                    .all([args.homeserverHost, args.maxUploadSize, args.rtc, args.auth])
                    .apply(([homeserverHost, maxUploadSize, rtc, auth]) =>
                        renderHomeserverSite({
                            homeserverHost,
                            maxUploadSize,
                            ipv6,
                            federationPort: args.delegation === "none",
                            support: args.support,
                            rtc,
                            auth,
                        }),
                    ),
            ),
            ...(args.delegation === "apex"
                ? [
                      siteFile(
                          "apex",
                          NGINX_PATHS.apexSite,
                          pulumi
                              .all([args.domain, args.homeserverHost, args.rtc])
                              .apply(([domain, homeserverHost, rtc]) =>
                                  renderApexSite({ domain, homeserverHost, ipv6, support: args.support, rtc }),
                              ),
                      ),
                  ]
                : []),
        ];
        // Which Synapse process serves which path: the one file a change of workers touches.
        siteFiles.push(
            remoteFile(
                `${name}-synapse-upstreams`,
                args.host,
                {
                    path: WORKER_PATHS.nginxUpstreams,
                    content: pulumi.output(args.upstreams).apply(renderNginxUpstreams),
                    removeOnDelete: true,
                    ...SITE_FILE_MODE,
                },
                { parent: this, dependsOn: certificates },
            ),
        );
        const enabled = [NGINX_PATHS.homeserverSite, ...(args.delegation === "apex" ? [NGINX_PATHS.apexSite] : [])];
        const sites = remoteStep(
            `${name}-sites`,
            args.host,
            {
                create: filesRevision(siteFiles).apply((revision) =>
                    renderSitesScript(
                        {
                            enabled,
                            absent: args.delegation === "apex" ? [] : [NGINX_PATHS.apexSite],
                            revision,
                        },
                        { user },
                    ),
                ),
                delete: renderSitesDeleteScript(
                    { disable: [NGINX_PATHS.homeserverSite, NGINX_PATHS.apexSite] },
                    { user },
                ),
            },
            { parent: this, dependsOn: certificates },
        );

        const ready = (role: keyof CertificateHosts<unknown>, host: pulumi.Input<string>) =>
            after([sites, certificateSteps.find(([r]) => r === role)![1]], host);
        this.certificates = {
            homeserver: ready("homeserver", args.certificateHosts.homeserver),
            element: ready("element", args.certificateHosts.element),
            apex: args.certificateHosts.apex !== undefined ? ready("apex", args.certificateHosts.apex) : undefined,
        };
        this.homeserverUrl = after(
            sites,
            pulumi.output(args.homeserverHost).apply((h) => `https://${h}`),
        );
        this.registerOutputs({ certificates: this.certificates, homeserverUrl: this.homeserverUrl });
    }
}
