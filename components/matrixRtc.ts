import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { after, mapInput, type PlainOrOutput } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import type { ManagedFile } from "../lib/managedFile";
import {
    renderJwtKeys,
    renderJwtServiceUnit,
    renderLivekitConfig,
    renderLivekitUnit,
    renderRtcDirsScript,
    renderRtcReleaseScript,
    renderRtcServiceScript,
    renderRtcStopScript,
    rtcBinaryPath,
    rtcUrls,
    RTC_FILE_MODES,
    RTC_PATHS,
    type RtcRelease,
} from "../render/rtc";

export interface MatrixRtcArgs {
    host: Host;
    /** This server's name: its users may create rooms on the SFU. */
    serverName: string;
    /** The homeserver host, whose vhost serves the services under /livekit/. */
    homeserverHost: string;
    /** The machine's public IPv4, the address ICE candidates carry. */
    nodeIp: PlainOrOutput<string>;
    livekit: Omit<RtcRelease, "binary">;
    jwtService: Omit<RtcRelease, "binary">;
    udpPort: number;
    tcpPort: number;
    /** LiveKit's embedded TURN on this UDP port. Default: off. */
    turnUdpPort?: number;
    /** Other homeservers whose users may create rooms. Default: none. */
    fullAccessHomeservers?: string[];
    /** The CAs lk-jwt-service trusts instead of the system's (matrix:federation.caBundle). */
    caBundle?: string;
}

/**
 * The MatrixRTC backend: LiveKit's SFU and lk-jwt-service, pinned and checksum-verified release
 * binaries run by units of their own, with a generated API secret delivered in secret files.
 */
export class MatrixRtc extends pulumi.ComponentResource {
    /** lk-jwt-service's public URL, resolved once both services answer (known in a preview). */
    public readonly serviceUrl: pulumi.Output<string>;

    constructor(name: string, args: MatrixRtcArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:MatrixRtc", name, {}, opts);
        const user = args.host.user;
        const urls = rtcUrls(args.homeserverHost);
        const apiSecret = pulumi.secret(
            new random.RandomPassword(`${name}-api-secret`, { length: 48, special: false }, { parent: this }).result,
        );
        const dirs = remoteStep(`${name}-dirs`, args.host, renderRtcDirsScript({ user }), { parent: this });
        const releases = {
            livekit: { binary: "livekit-server", ...args.livekit } as const,
            jwt: { binary: "lk-jwt-service", ...args.jwtService } as const,
        };
        const release = (role: string, r: RtcRelease) =>
            remoteStep(
                `${name}-${role}-release`,
                args.host,
                { create: renderRtcReleaseScript(r, { user }) },
                { parent: this, dependsOn: [dirs] },
            );
        const install = { livekit: release("livekit", releases.livekit), jwt: release("jwt", releases.jwt) };
        const file = (
            role: string,
            path: string,
            content: pulumi.Input<string>,
            mode: (typeof RTC_FILE_MODES)[keyof typeof RTC_FILE_MODES],
        ): ManagedFile =>
            remoteFile(
                `${name}-${role}`,
                args.host,
                { path, content, removeOnDelete: true, ...mode },
                { parent: this, dependsOn: [dirs] },
            );
        const livekitConfig = file(
            "livekit-yaml",
            RTC_PATHS.livekitConfig,
            pulumi.secret(
                apiSecret.apply((secret) =>
                    mapInput(args.nodeIp, (nodeIp) =>
                        renderLivekitConfig({
                            nodeIp,
                            udpPort: args.udpPort,
                            tcpPort: args.tcpPort,
                            apiSecret: secret,
                            turn:
                                args.turnUdpPort !== undefined
                                    ? { udpPort: args.turnUdpPort, domain: args.homeserverHost }
                                    : undefined,
                        }),
                    ),
                ),
            ),
            RTC_FILE_MODES.livekitConfig,
        );
        const jwtKeys = file(
            "jwt-keys",
            RTC_PATHS.jwtKeys,
            pulumi.secret(apiSecret.apply(renderJwtKeys)),
            RTC_FILE_MODES.jwtKeys,
        );
        const jwtCa =
            args.caBundle !== undefined ? [file("jwt-ca", RTC_PATHS.jwtCa, args.caBundle, RTC_FILE_MODES.jwtCa)] : [];
        const binaries = { livekit: rtcBinaryPath(releases.livekit), jwt: rtcBinaryPath(releases.jwt) };
        const livekitUnit = file(
            "livekit-unit",
            RTC_PATHS.livekitUnit,
            renderLivekitUnit({ binary: binaries.livekit }),
            RTC_FILE_MODES.unit,
        );
        const jwtUnit = file(
            "jwt-unit",
            RTC_PATHS.jwtUnit,
            renderJwtServiceUnit({
                binary: binaries.jwt,
                sfuUrl: urls.sfuUrl,
                fullAccessHomeservers: [args.serverName, ...(args.fullAccessHomeservers ?? [])],
                customCa: args.caBundle !== undefined,
            }),
            RTC_FILE_MODES.unit,
        );
        const service = remoteStep(
            `${name}-service`,
            args.host,
            {
                create: pulumi
                    .all([filesRevision([livekitConfig, livekitUnit]), filesRevision([jwtKeys, jwtUnit, ...jwtCa])])
                    .apply(([livekitRevision, jwtRevision]) =>
                        renderRtcServiceScript(
                            {
                                livekitRevision,
                                jwtRevision,
                                binaries: Object.values(binaries),
                                livekitBinary: binaries.livekit,
                            },
                            { user },
                        ),
                    ),
                delete: renderRtcStopScript({ user }),
            },
            {
                parent: this,
                dependsOn: [install.livekit, install.jwt, livekitConfig, jwtKeys, ...jwtCa, livekitUnit, jwtUnit],
            },
        );
        this.serviceUrl = after(service, urls.serviceUrl);
        this.registerOutputs({ serviceUrl: this.serviceUrl });
    }
}
