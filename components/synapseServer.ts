import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { after } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    renderHomeserverConfig,
    renderLogConfig,
    renderSecretsConfig,
    renderSynapseDataScript,
    renderSynapseInstallScript,
    renderSynapseServiceDeleteScript,
    renderSynapseServiceScript,
    renderSynapseUnit,
    synapseRevision,
    SYNAPSE_FILE_MODES,
    SYNAPSE_LISTEN,
    SYNAPSE_PATHS,
} from "../render/synapse";
import { hasWorkers, upstreamLayout, type UpstreamLayout, type WorkerCounts } from "../render/workers";
import { SynapseRedis, SynapseWorkers } from "./synapseWorkers";
import { SYNAPSE_METRICS_LISTENER } from "../render/monitoring";

export interface SynapseServerArgs {
    /** The server and how to reach it. */
    host: Host;
    /** The Matrix server name (user IDs are @user:serverName). Immutable once users exist. */
    serverName: pulumi.Input<string>;
    /** Public host name of the homeserver; public_baseurl is https://<homeserverHost>/. */
    homeserverHost: pulumi.Input<string>;
    /** matrix-synapse release from PyPI, e.g. "1.163.2". */
    version: pulumi.Input<string>;
    /** pip --find-links source instead of PyPI (air-gapped hosts). Default: PyPI. */
    wheelhouse?: pulumi.Input<string | undefined>;
    /** Open registration. */
    enableRegistration: pulumi.Input<boolean>;
    /** Largest upload, as Synapse and nginx read it ("50M"). */
    maxUploadSize: pulumi.Input<string>;
    /** Report anonymous usage statistics to matrix.org. */
    reportStats: pulumi.Input<boolean>;
    /** More homeserver.yaml keys, merged at the top level. */
    extraConfig: pulumi.Input<Record<string, unknown>>;
    /** How long to wait for /health after a (re)start, in seconds. */
    healthTimeoutSeconds: pulumi.Input<number>;
    /**
     * A closed or private federation: the CAs it trusts (PEM, instead of the system's), the only
     * servers it talks to, and private address ranges it may reach. Default: open federation.
     */
    federation?: {
        caBundle?: string;
        allowedServers?: string[];
        allowedIpRanges?: string[];
    };
    /** Secrets to use instead of generated ones (48 random letters and digits each). Default: generated. */
    secrets?: {
        registrationSharedSecret?: pulumi.Input<string>;
        macaroonSecretKey?: pulumi.Input<string>;
        formSecret?: pulumi.Input<string>;
    };
    /** Worker processes by kind (matrix:synapse.workers). */
    workers: WorkerCounts;
    /** How long media is kept after its last access ("forever" or "90d"). Default: Synapse's (forever). */
    mediaRetention?: { local: string; remote: string };
    /** Metrics listeners on loopback for every process (matrix:monitoring). */
    metrics: boolean;
    /** MatrixRTC (matrix:rtc): lk-jwt-service's public URL, announced as the LiveKit transport. Default: none. */
    rtc?: { serviceUrl: string };
    /** coturn (matrix:turn): its URIs and the credentials' lifetime (the shared secret is generated). Default: none. */
    turn?: { uris: string[]; userLifetime: string };
    /**
     * Matrix Authentication Service (MatrixAuth) signs users in: its shared secret (in secrets.yaml).
     * Give the host MatrixAuth.ready as a prerequisite: syn2mas reads Synapse's config as it was.
     * `metadataRevision` (MatrixAuth.metadataRevision) restarts Synapse when MAS's discovery
     * document may have changed: Synapse fetches it once per process and serves it as
     * auth_metadata, which is where clients read whether MAS takes registrations.
     * Default: Synapse signs users in itself.
     */
    auth?: { sharedSecret: pulumi.Input<string>; metadataRevision: pulumi.Input<string> };
    /** On destroy, delete Synapse's data (media, signing key), config and venv. */
    purgeOnDestroy: boolean;
    /** The database to use (from PostgresDatabase). */
    database: {
        name: pulumi.Input<string>;
        user: pulumi.Input<string>;
        password: pulumi.Input<string>;
        address: pulumi.Input<{ host: string; port: number }>;
        /** A database on another host: its CA (PostgresDatabase.caCertificate); Synapse verifies it. */
        caCertificate?: pulumi.Input<string>;
    };
}

/**
 * Synapse in a venv with a pinned release, homeserver.yaml rendered from settings, secrets in a
 * separate file only root and the synapse user can read, a systemd unit; waits for /health.
 */
export class SynapseServer extends pulumi.ComponentResource {
    /** The shared secret for the admin registration API (secret). */
    public readonly registrationSharedSecret: pulumi.Output<string>;
    /** With `turn`: the secret coturn derives TURN credentials from (use-auth-secret; secret). */
    public readonly turnSharedSecret?: pulumi.Output<string>;
    /** Synapse's loopback listener, resolved once it answers /health (known in a preview). */
    public readonly localUrl: pulumi.Output<string>;
    /** Where each Synapse process listens, resolved once all are healthy: what nginx routes to. */
    public readonly upstreams: pulumi.Output<UpstreamLayout>;

    constructor(name: string, args: SynapseServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:SynapseServer", name, {}, opts);
        const user = args.host.user;
        const workers = args.workers;
        const scaled = hasWorkers(workers);
        const secret = (role: string, provided: pulumi.Input<string> | undefined) =>
            pulumi.secret(
                provided ??
                    new random.RandomPassword(`${name}-${role}`, { length: 48, special: false }, { parent: this })
                        .result,
            );
        this.registrationSharedSecret = secret("registration-shared-secret", args.secrets?.registrationSharedSecret);
        const macaroonSecretKey = secret("macaroon-secret-key", args.secrets?.macaroonSecretKey);
        const formSecret = secret("form-secret", args.secrets?.formSecret);
        this.turnSharedSecret = args.turn ? secret("turn-shared-secret", undefined) : undefined;

        // Media, signing key, config and venv: kept or purged on destroy, after the service stops.
        const data = remoteStep(
            `${name}-data`,
            args.host,
            renderSynapseDataScript({ purge: args.purgeOnDestroy }, { user }),
            { parent: this },
        );
        const install = remoteStep(
            `${name}-install`,
            args.host,
            {
                create: pulumi
                    .all([args.version, args.wheelhouse])
                    .apply(([version, wheelhouse]) => renderSynapseInstallScript({ version, wheelhouse }, { user })),
            },
            { parent: this, dependsOn: [data] },
        );

        const files = pulumi
            .all([
                args.serverName,
                args.homeserverHost,
                args.enableRegistration,
                args.maxUploadSize,
                args.reportStats,
                args.extraConfig,
            ])
            .apply(([serverName, homeserverHost, enableRegistration, maxUploadSize, reportStats, extraConfig]) => ({
                homeserverConfig: renderHomeserverConfig({
                    serverName,
                    homeserverHost,
                    enableRegistration,
                    maxUploadSize,
                    reportStats,
                    extraConfig,
                    federation: {
                        customCa: args.federation?.caBundle !== undefined,
                        allowedServers: args.federation?.allowedServers,
                        allowedIpRanges: args.federation?.allowedIpRanges,
                    },
                    workers,
                    mediaRetention: args.mediaRetention,
                    metricsListener: args.metrics ? SYNAPSE_METRICS_LISTENER : undefined,
                    rtc: args.rtc,
                    turn: args.turn,
                    auth: args.auth !== undefined,
                }),
                logConfig: renderLogConfig(),
                unit: renderSynapseUnit({ workers: scaled }),
            }));
        // Each file Synapse reads is a resource `pulumi refresh` can read back (drift).
        const file = (role: keyof typeof SYNAPSE_FILE_MODES, resourceName: string, content: pulumi.Input<string>) =>
            remoteFile(
                `${name}-${resourceName}`,
                args.host,
                { path: SYNAPSE_PATHS[role], content, ...SYNAPSE_FILE_MODES[role] },
                { parent: this, dependsOn: [install] },
            );
        const homeserverConfig = file("homeserverConfig", "homeserver-yaml", files.homeserverConfig);
        const logConfig = file("logConfig", "log-yaml", files.logConfig);
        const unit = file("unit", "unit", files.unit);
        // The CAs federation trusts: read by Synapse, so a file whose drift restarts it.
        const federationCa =
            args.federation?.caBundle !== undefined
                ? [file("federationCa", "federation-ca", args.federation.caBundle)]
                : [];
        // The database host's CA: read by Synapse at each connection, so a file whose drift restarts it.
        const databaseCa =
            args.database.caCertificate !== undefined
                ? [file("databaseCa", "database-ca", args.database.caCertificate)]
                : [];

        const secretsFile = pulumi
            .all([
                this.registrationSharedSecret,
                macaroonSecretKey,
                formSecret,
                args.database.name,
                args.database.user,
                args.database.password,
                args.database.address,
                pulumi.all([this.turnSharedSecret, args.auth?.sharedSecret]),
            ])
            .apply(
                ([
                    registrationSharedSecret,
                    macaroonSecretKey,
                    formSecret,
                    dbName,
                    dbUser,
                    dbPassword,
                    address,
                    [turnSharedSecret, masSharedSecret],
                ]) =>
                    renderSecretsConfig({
                        registrationSharedSecret,
                        macaroonSecretKey,
                        formSecret,
                        turnSharedSecret,
                        masSharedSecret,
                        database: {
                            name: dbName,
                            user: dbUser,
                            password: dbPassword,
                            ...address,
                            tls: args.database.caCertificate !== undefined,
                        },
                    }),
            );
        const secrets = file("secretsConfig", "secrets-yaml", secretsFile);
        // With workers, their Redis runs before the main process starts with `redis.enabled`.
        const redis = scaled
            ? new SynapseRedis(`${name}-redis`, { host: args.host, dependsOn: [install] }, { parent: this })
            : undefined;

        const service = remoteStep(
            `${name}-service`,
            args.host,
            {
                delete: renderSynapseServiceDeleteScript({ user }),
                create: pulumi
                    .all([
                        filesRevision([homeserverConfig, logConfig, secrets, unit, ...federationCa, ...databaseCa]),
                        args.version,
                        args.healthTimeoutSeconds,
                        args.auth?.metadataRevision,
                    ])
                    .apply(([files, version, healthTimeoutSeconds, masMetadata]) =>
                        renderSynapseServiceScript(
                            {
                                revision: synapseRevision([version, files, ...(masMetadata ? [masMetadata] : [])]),
                                healthTimeoutSeconds,
                                version,
                            },
                            { user },
                        ),
                    ),
            },
            { parent: this, dependsOn: [install, data, ...(redis ? [redis.ready] : [])] },
        );
        const workerProcesses = scaled
            ? new SynapseWorkers(
                  `${name}-workers`,
                  {
                      host: args.host,
                      workers,
                      sharedFiles: [homeserverConfig, logConfig, secrets, ...federationCa, ...databaseCa],
                      version: args.version,
                      healthTimeoutSeconds: args.healthTimeoutSeconds,
                      metrics: args.metrics,
                      dependsOn: [service, redis!.ready],
                  },
                  { parent: this },
              )
            : undefined;

        this.localUrl = after(service, `http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}`);
        this.upstreams = after([service, ...(workerProcesses ? [workerProcesses.ready] : [])], upstreamLayout(workers));
        this.registerOutputs({
            registrationSharedSecret: this.registrationSharedSecret,
            localUrl: this.localUrl,
            upstreams: this.upstreams,
        });
    }
}
