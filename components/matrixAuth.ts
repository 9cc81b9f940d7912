import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import type { ManagedFile } from "../lib/managedFile";
import { after, type PlainOrOutput } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import {
    masReleaseDir,
    MAS_FILE_MODES,
    MAS_PATHS,
    renderMasConfig,
    renderMasDirsScript,
    renderMasReleaseScript,
    renderMasServiceScript,
    renderMasStopScript,
    renderMasUnit,
    type MasRelease,
} from "../render/mas";
import type { PostgresCluster } from "../render/postgres";
import type { FileMode } from "../render/shell";
import { SYNAPSE_PATHS } from "../render/synapseBase";
import { PostgresDatabase } from "./postgresDatabase";

export interface MatrixAuthArgs {
    host: Host;
    /** The Matrix server name (MAS's `matrix.homeserver`). */
    serverName: string;
    /** The homeserver host: MAS is served at https://<homeserverHost>/auth/. */
    homeserverHost: string;
    /** The pinned release tarball (matrix:auth.mas). */
    release: MasRelease;
    /** Synapse's PostgreSQL cluster: MAS's database and role are made in it. */
    cluster: PlainOrOutput<PostgresCluster>;
    /** matrix:synapse.enableRegistration: password registration in MAS. */
    registration: boolean;
    registrationTokenRequired: boolean;
    /** On destroy, drop MAS's database and role. */
    purgeOnDestroy: boolean;
}

/**
 * Matrix Authentication Service: the pinned release, its own database and role in Synapse's
 * cluster, its keys made on the host, its config with every secret in a file of its own, a
 * hardened unit; Synapse's accounts moved to it once (syn2mas) before it serves anyone.
 */
export class MatrixAuth extends pulumi.ComponentResource {
    /** The secret Synapse and MAS share (matrix_authentication_service.secret). */
    public readonly synapseSharedSecret: pulumi.Output<string>;
    /** Resolved once MAS answers its health check (known in a preview): what Synapse and nginx wait for. */
    public readonly ready: pulumi.Output<boolean>;
    /**
     * Changes whenever MAS's config or release does, and so what its discovery document may say
     * (registration among it): Synapse restarts on it, as it reads that document once per process.
     */
    public readonly metadataRevision: pulumi.Output<string>;
    /** The step that (re)starts MAS: Synapse's steps wait for it (syn2mas reads Synapse as it was). */
    public readonly service: pulumi.Resource;

    constructor(name: string, args: MatrixAuthArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:MatrixAuth", name, {}, opts);
        const user = args.host.user;
        const secret = (role: string) =>
            pulumi.secret(
                new random.RandomPassword(`${name}-${role}`, { length: 64, special: false }, { parent: this }).result,
            );
        this.synapseSharedSecret = secret("synapse-shared-secret");
        const adminClientSecret = secret("admin-client-secret");

        const database = new PostgresDatabase(
            `${name}-postgres`,
            {
                host: args.host,
                cluster: args.cluster,
                database: "matrix_auth",
                user: "matrix_auth",
                purgeOnDestroy: args.purgeOnDestroy,
            },
            { parent: this },
        );
        const dirs = remoteStep(`${name}-dirs`, args.host, renderMasDirsScript({ user }), { parent: this });
        const release = remoteStep(
            `${name}-release`,
            args.host,
            { create: renderMasReleaseScript(args.release, { user }) },
            { parent: this, dependsOn: [dirs] },
        );
        const file = (
            role: string,
            path: string,
            content: pulumi.Input<string>,
            mode: FileMode = MAS_FILE_MODES.secret,
        ) => remoteFile(`${name}-${role}`, args.host, { path, content, ...mode }, { parent: this, dependsOn: [dirs] });
        const releaseDir = masReleaseDir(args.release);
        const config = file(
            "config-yaml",
            MAS_PATHS.config,
            pulumi.all([database.databaseName, database.userName, database.address]).apply(([name, dbUser, address]) =>
                renderMasConfig({
                    serverName: args.serverName,
                    homeserverHost: args.homeserverHost,
                    release: args.release,
                    database: { ...address, name, user: dbUser },
                    registration: args.registration,
                    registrationTokenRequired: args.registrationTokenRequired,
                }),
            ),
            MAS_FILE_MODES.config,
        );
        const secrets: ManagedFile[] = [
            file("database-password-file", MAS_PATHS.databasePassword, database.password),
            file("synapse-shared-secret-file", MAS_PATHS.synapseSecret, this.synapseSharedSecret),
            file("admin-client-secret-file", MAS_PATHS.adminClientSecret, adminClientSecret),
        ];
        const unit = file("unit", MAS_PATHS.unit, renderMasUnit({ release: releaseDir }), MAS_FILE_MODES.unit);
        this.service = remoteStep(
            `${name}-service`,
            args.host,
            {
                create: filesRevision([config, ...secrets, unit]).apply((revision) =>
                    renderMasServiceScript(
                        {
                            revision,
                            release: releaseDir,
                            keepReleases: [releaseDir],
                            synapseConfigs: [SYNAPSE_PATHS.homeserverConfig, SYNAPSE_PATHS.secretsConfig],
                        },
                        { user },
                    ),
                ),
                delete: renderMasStopScript({ user }),
            },
            { parent: this, dependsOn: [release, database, config, ...secrets, unit] },
        );
        this.metadataRevision = filesRevision([config]);
        this.ready = after(this.service, true);
        this.registerOutputs({ ready: this.ready });
    }
}
