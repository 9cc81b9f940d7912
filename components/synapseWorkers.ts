import * as pulumi from "@pulumi/pulumi";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import type { ManagedFile } from "../lib/managedFile";
import {
    renderRedisConfig,
    renderRedisDeleteScript,
    renderRedisScript,
    renderRedisUnit,
    renderSynapseTarget,
    renderWorkerConfig,
    renderWorkersDeleteScript,
    renderWorkersScript,
    renderWorkerUnit,
    WORKER_FILE_MODES,
    WORKER_PATHS,
    workerConfigPath,
    workerList,
    workerRevision,
    type WorkerCounts,
} from "../render/workers";

export interface SynapseRedisArgs {
    host: Host;
    /** What the step waits for (Synapse's install: its user and folders). */
    dependsOn: pulumi.Resource[];
}

/**
 * Synapse's own Redis (the distribution's redis-server on a UNIX socket) and the
 * matrix-synapse.target every Synapse process belongs to: in place before the main process
 * starts with `redis.enabled`.
 */
export class SynapseRedis extends pulumi.ComponentResource {
    /** The step the main process waits for. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: SynapseRedisArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:SynapseRedis", name, {}, opts);
        const user = args.host.user;
        const file = (
            role: string,
            path: string,
            content: string,
            mode: (typeof WORKER_FILE_MODES)[keyof typeof WORKER_FILE_MODES],
        ) =>
            remoteFile(
                `${name}-${role}`,
                args.host,
                { path, content, removeOnDelete: true, ...mode },
                {
                    parent: this,
                    dependsOn: args.dependsOn,
                },
            );
        const files = [
            file("config", WORKER_PATHS.redisConfig, renderRedisConfig(), WORKER_FILE_MODES.config),
            file("unit", WORKER_PATHS.redisUnit, renderRedisUnit(), WORKER_FILE_MODES.unit),
            file("target", WORKER_PATHS.target, renderSynapseTarget(), WORKER_FILE_MODES.unit),
        ];
        this.ready = remoteStep(
            `${name}-service`,
            args.host,
            {
                create: filesRevision(files).apply((revision) => renderRedisScript({ revision }, { user })),
                delete: renderRedisDeleteScript({ user }),
            },
            { parent: this, dependsOn: args.dependsOn },
        );
        this.registerOutputs({});
    }
}

export interface SynapseWorkersArgs {
    host: Host;
    workers: WorkerCounts;
    /** The files every Synapse process reads (homeserver.yaml, secrets.yaml, log.yaml). */
    sharedFiles: ManagedFile[];
    version: pulumi.Input<string>;
    healthTimeoutSeconds: pulumi.Input<number>;
    /** What the workers wait for: the healthy main process and Redis. */
    dependsOn: pulumi.Resource[];
}

/**
 * Synapse's worker processes: one config file each (a managed file: drift shows, and restoring
 * one restarts only that worker), one template unit, and a step that (re)starts exactly the
 * workers whose revision changed and stops those the layout no longer has.
 */
export class SynapseWorkers extends pulumi.ComponentResource {
    /** The step nginx's routes wait for. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: SynapseWorkersArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:SynapseWorkers", name, {}, opts);
        const user = args.host.user;
        const workers = workerList(args.workers);
        const unit = remoteFile(
            `${name}-unit`,
            args.host,
            { path: WORKER_PATHS.unit, content: renderWorkerUnit(), removeOnDelete: true, ...WORKER_FILE_MODES.unit },
            { parent: this, dependsOn: args.sharedFiles },
        );
        const configs = workers.map((w) =>
            remoteFile(
                `${name}-${w.name}`,
                args.host,
                {
                    path: workerConfigPath(w.name),
                    content: renderWorkerConfig(w),
                    removeOnDelete: true,
                    ...WORKER_FILE_MODES.config,
                },
                { parent: this, dependsOn: args.sharedFiles },
            ),
        );
        const shared = filesRevision([...args.sharedFiles, unit]);
        const own = configs.map((c) => filesRevision([c]));
        this.ready = remoteStep(
            `${name}-service`,
            args.host,
            {
                create: pulumi
                    .all([shared, pulumi.all(own), args.version, args.healthTimeoutSeconds])
                    .apply(([sharedRevision, ownRevisions, version, healthTimeoutSeconds]) =>
                        renderWorkersScript(
                            {
                                workers: workers.map((w, i) => ({
                                    name: w.name,
                                    port: w.port,
                                    revision: workerRevision([version, sharedRevision, ownRevisions[i] ?? ""]),
                                })),
                                healthTimeoutSeconds,
                            },
                            { user },
                        ),
                    ),
                delete: renderWorkersDeleteScript({ user }),
            },
            { parent: this, dependsOn: [...args.dependsOn, unit, ...configs] },
        );
        this.registerOutputs({});
    }
}
