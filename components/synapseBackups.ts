import * as pulumi from "@pulumi/pulumi";
import { remoteStep, type Host } from "../lib/remote";
import { renderBackupDeleteScript, renderBackupScript } from "../render/backup";

export interface SynapseBackupsArgs {
    /** The server and how to reach it. */
    host: Host;
    /** systemd OnCalendar expression. */
    schedule: pulumi.Input<string>;
    /** How many scheduled backups to keep. */
    retention: pulumi.Input<number>;
    /** Synapse's loopback URL (SynapseServer.localUrl): installed once Synapse is up. */
    synapseUrl: pulumi.Input<string>;
}

/**
 * A systemd timer that backs up the database (pg_dump -Fc), the signing key and the media store
 * into /var/backups/matrix-synapse, keeping the newest `retention`; and matrix-synapse-restore.
 */
export class SynapseBackups extends pulumi.ComponentResource {
    constructor(name: string, args: SynapseBackupsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:SynapseBackups", name, {}, opts);
        const user = args.host.user;
        remoteStep(
            `${name}-timer`,
            args.host,
            {
                create: pulumi
                    .all([args.schedule, args.retention, args.synapseUrl])
                    .apply(([schedule, retention]) => renderBackupScript({ schedule, retention }, { user })),
                delete: renderBackupDeleteScript({ user }),
            },
            { parent: this },
        );
        this.registerOutputs({});
    }
}
