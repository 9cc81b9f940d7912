import * as pulumi from "@pulumi/pulumi";
import { mapInput, type PlainOrOutput } from "../lib/order";
import { filesRevision, remoteFile, remoteStep, type Host } from "../lib/remote";
import type { ManagedFile } from "../lib/managedFile";
import {
    dropInPath,
    monitoringServices,
    MONITORING_FILE_MODES,
    MONITORING_PATHS,
    renderAlertmanagerConfig,
    renderAlertRules,
    renderDropIn,
    renderMetricsCommand,
    renderMetricsUnits,
    renderMonitoringDirsScript,
    renderMonitoringScript,
    renderMonitoringStopScript,
    renderPrometheusConfig,
    type AlertEmail,
    type MonitoringService,
} from "../render/monitoring";
import type { WorkerCounts } from "../render/workers";
import type { PostgresCluster } from "../render/postgres";

export interface MonitoringArgs {
    host: Host;
    /** Synapse's processes, each scraped on its metrics port. */
    workers: WorkerCounts;
    /**
     * PostgreSQL on this host, the cluster the program manages: its exporter runs on that cluster's
     * port and PostgresDown is watched. Undefined with the database on a host of its own.
     */
    postgresCluster?: PlainOrOutput<PostgresCluster>;
    scrapeInterval: string;
    retention: string;
    backupSchedule: string;
    /** Alerts by e-mail; the password (a secret) only when the SMTP server wants a login. */
    email?: Omit<AlertEmail, "password"> & { password?: pulumi.Input<string> };
    /** What the services wait for: Synapse with its metrics listeners, PostgreSQL. */
    dependsOn: pulumi.Resource[];
}

/**
 * Prometheus, its exporters and Alertmanager from the distribution, configured by managed files
 * (drift shows; a restored file restarts only its service), and the metrics timer.
 */
export class Monitoring extends pulumi.ComponentResource {
    constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:Monitoring", name, {}, opts);
        const user = args.host.user;
        const dirsScript = renderMonitoringDirsScript({ user });
        const dirs = remoteStep(
            `${name}-dirs`,
            args.host,
            { create: dirsScript.create, delete: dirsScript.delete },
            { parent: this, dependsOn: args.dependsOn },
        );
        const file = (
            role: string,
            path: string,
            content: pulumi.Input<string>,
            mode: (typeof MONITORING_FILE_MODES)[keyof typeof MONITORING_FILE_MODES],
        ): ManagedFile =>
            remoteFile(
                `${name}-${role}`,
                args.host,
                { path, content, removeOnDelete: true, ...mode },
                {
                    parent: this,
                    dependsOn: [dirs],
                },
            );
        const local = { localDatabase: args.postgresCluster !== undefined };
        const services = monitoringServices(local);
        const dropIns = Object.fromEntries(
            services.map((s) => [
                s,
                file(
                    `${s}-dropin`,
                    dropInPath(s),
                    mapInput(args.postgresCluster, (c) =>
                        renderDropIn(s, { retention: args.retention, postgresPort: c?.port }),
                    ),
                    MONITORING_FILE_MODES.config,
                ),
            ]),
        ) as Partial<Record<MonitoringService, ManagedFile>>;
        const prometheus = file(
            "prometheus-yml",
            MONITORING_PATHS.prometheusConfig,
            renderPrometheusConfig({ scrapeInterval: args.scrapeInterval, workers: args.workers, ...local }),
            MONITORING_FILE_MODES.config,
        );
        const rules = file("rules-yml", MONITORING_PATHS.rules, renderAlertRules(local), MONITORING_FILE_MODES.config);
        const email = args.email;
        const alertmanager = file(
            "alertmanager-yml",
            MONITORING_PATHS.alertmanagerConfig,
            email?.password !== undefined
                ? pulumi.secret(
                      pulumi
                          .output(email.password)
                          .apply((password) => renderAlertmanagerConfig({ email: { ...email, password } })),
                  )
                : renderAlertmanagerConfig({ email: email && { ...email, password: undefined } }),
            MONITORING_FILE_MODES.secret,
        );
        const units = renderMetricsUnits();
        const metricsFiles = [
            file(
                "metrics-command",
                MONITORING_PATHS.metricsCommand,
                renderMetricsCommand({ backupSchedule: args.backupSchedule }),
                MONITORING_FILE_MODES.command,
            ),
            file("metrics-service", MONITORING_PATHS.metricsService, units.service, MONITORING_FILE_MODES.config),
            file("metrics-timer", MONITORING_PATHS.metricsTimer, units.timer, MONITORING_FILE_MODES.config),
        ];
        const own: Record<MonitoringService, ManagedFile[]> = {
            prometheus: [prometheus, rules],
            alertmanager: [alertmanager],
            node: [],
            postgres: [],
        };
        const revisions = services.map((s) => filesRevision([...own[s], dropIns[s]!]));
        const metricsRevision = filesRevision(metricsFiles);
        remoteStep(
            `${name}-service`,
            args.host,
            {
                create: pulumi.all([pulumi.all(revisions), metricsRevision]).apply(
                    ([rs, metrics]) =>
                        mapInput(args.postgresCluster, (cluster) =>
                            renderMonitoringScript(
                                {
                                    services: services.map((service, i) => ({ service, revision: rs[i] ?? "" })),
                                    metricsRevision: metrics,
                                    cluster,
                                },
                                { user },
                            ),
                        ) as string /* an Output here is flattened by apply */,
                ),
                delete: renderMonitoringStopScript({ user }),
            },
            {
                parent: this,
                dependsOn: [
                    ...args.dependsOn,
                    ...Object.values(dropIns),
                    prometheus,
                    rules,
                    alertmanager,
                    ...metricsFiles,
                ],
            },
        );
        this.registerOutputs({});
    }
}
