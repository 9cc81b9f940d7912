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
    type WorkerCounts,
} from "../render/workers";
import { synapseRevision } from "../render/synapseBase";
import { workerMetricsPort } from "../render/monitoring";

type WorkerFileMode = (typeof WORKER_FILE_MODES)[keyof typeof WORKER_FILE_MODES];

/** A file only the workers' layout needs: it goes when the layout does (back to `none`, destroy). */
function workerFile(
    name: string,
    host: Host,
    path: string,
    content: string,
    mode: WorkerFileMode,
    opts: pulumi.CustomResourceOptions,
): ManagedFile {
    return remoteFile(name, host, { path, content, removeOnDelete: true, ...mode }, opts);
}

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
        const file = (role: string, path: string, content: string, mode: WorkerFileMode) =>
            workerFile(`${name}-${role}`, args.host, path, content, mode, { parent: this, dependsOn: args.dependsOn });
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
    /** A metrics listener on each worker (matrix:monitoring). */
    metrics: boolean;
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
        const fileOpts = { parent: this, dependsOn: args.sharedFiles };
        const unit = workerFile(
            `${name}-unit`,
            args.host,
            WORKER_PATHS.unit,
            renderWorkerUnit(),
            WORKER_FILE_MODES.unit,
            fileOpts,
        );
        const configs = workers.map((w) =>
            workerFile(
                `${name}-${w.name}`,
                args.host,
                workerConfigPath(w.name),
                renderWorkerConfig(w, { metricsPort: args.metrics ? workerMetricsPort(workers, w.name) : undefined }),
                WORKER_FILE_MODES.config,
                fileOpts,
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
                                    revision: synapseRevision([version, sharedRevision, ownRevisions[i] ?? ""]),
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
