// Metrics and alerts (matrix:monitoring): the distribution's Prometheus, node and PostgreSQL
// exporters and Alertmanager, each on loopback only, started by systemd drop-ins of our own (no
// Debian conffile is edited), scraping Synapse's metrics listeners; alert rules for a small
// server; and a timer that exports what no exporter knows (certificate expiry, the last backup).
import { stringify } from "yaml";
import { BACKUP_PATHS } from "./backup";
import { superPsql, type PostgresCluster } from "./postgres";
import { dirOf, ensureDir, restartOnRevision, script, sha256, shq } from "./shell";
import { SYNAPSE_LISTEN, SYNAPSE_PATHS, untilHealthy } from "./synapseBase";
import { workerList, type Worker, type WorkerCounts } from "./workers";

export const MONITORING_APT_PACKAGES = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
];

/** Loopback ports: Synapse's metrics listener (workers follow it), Prometheus and its exporters. */
export const METRICS_PORTS = {
    synapse: 9000,
    prometheus: 9090,
    alertmanager: 9093,
    node: 9100,
    postgres: 9187,
} as const;

/** The distribution's units, as Debian names them. */
export const MONITORING_SERVICES = {
    prometheus: "prometheus",
    alertmanager: "prometheus-alertmanager",
    node: "prometheus-node-exporter",
    postgres: "prometheus-postgres-exporter",
} as const;
export type MonitoringService = keyof typeof MONITORING_SERVICES;

const OUR_DIR = "/etc/prometheus/matrix-pulumi";
export const MONITORING_PATHS = {
    dir: OUR_DIR,
    prometheusConfig: `${OUR_DIR}/prometheus.yml`,
    rules: `${OUR_DIR}/rules.yml`,
    alertmanagerConfig: `${OUR_DIR}/alertmanager.yml`,
    /** node exporter's textfile collector folder (Debian's). */
    textfileDir: "/var/lib/prometheus/node-exporter",
    metricsCommand: "/usr/local/sbin/matrix-pulumi-metrics",
    metricsService: "/etc/systemd/system/matrix-pulumi-metrics.service",
    metricsTimer: "/etc/systemd/system/matrix-pulumi-metrics.timer",
    stampDir: "/var/lib/matrix-pulumi/monitoring",
} as const;

/** The systemd drop-in that starts one of the distribution's units our way. */
export function dropInPath(service: MonitoringService): string {
    return `/etc/systemd/system/${MONITORING_SERVICES[service]}.service.d/matrix-pulumi.conf`;
}

export const MONITORING_FILE_MODES = {
    config: { mode: "0644", owner: "root", group: "root" },
    /** alertmanager.yml holds the SMTP password: root and Prometheus' user only. */
    secret: { mode: "0640", owner: "root", group: "prometheus" },
    command: { mode: "0755", owner: "root", group: "root" },
} as const;

/** Synapse's metrics listener (loopback) for the main process. */
export const SYNAPSE_METRICS_LISTENER = {
    port: METRICS_PORTS.synapse,
    bind_addresses: [SYNAPSE_LISTEN.address],
    type: "metrics",
} as const;

/** A worker's metrics port: after the main process's, in the layout's order. */
export function workerMetricsPort(workers: Worker[], name: string): number {
    return METRICS_PORTS.synapse + 1 + workers.findIndex((w) => w.name === name);
}

export interface PrometheusSettings {
    scrapeInterval: string;
    workers: WorkerCounts;
    /** Whether PostgreSQL runs on this host (its exporter is scraped then). */
    localDatabase: boolean;
}

const loopback = (port: number) => `${SYNAPSE_LISTEN.address}:${port}`;

/** prometheus.yml: every Synapse process, the exporters, itself and Alertmanager; our rules. */
export function renderPrometheusConfig(s: PrometheusSettings): string {
    const workers = workerList(s.workers);
    const job = (name: string, port: number) => ({
        job_name: name,
        static_configs: [{ targets: [loopback(port)] }],
    });
    const config = {
        global: { scrape_interval: s.scrapeInterval, evaluation_interval: s.scrapeInterval },
        rule_files: [MONITORING_PATHS.rules],
        alerting: { alertmanagers: [{ static_configs: [{ targets: [loopback(METRICS_PORTS.alertmanager)] }] }] },
        scrape_configs: [
            {
                job_name: "synapse",
                metrics_path: "/_synapse/metrics",
                // One target per process, labelled by its name (the alert says which one is down).
                static_configs: [
                    { targets: [loopback(METRICS_PORTS.synapse)], labels: { process: "main" } },
                    ...workers.map((w) => ({
                        targets: [loopback(workerMetricsPort(workers, w.name))],
                        labels: { process: w.name },
                    })),
                ],
            },
            job("node", METRICS_PORTS.node),
            ...(s.localDatabase ? [job("postgres", METRICS_PORTS.postgres)] : []),
            job("prometheus", METRICS_PORTS.prometheus),
            job("alertmanager", METRICS_PORTS.alertmanager),
        ],
    };
    return "# Managed by matrix-pulumi; edits are overwritten.\n" + stringify(config, { lineWidth: 0 });
}

interface Rule {
    alert: string;
    expr: string;
    for: string;
    summary: string;
}

/** The alerts that matter to a small server (docs/monitoring.md). */
export function alertRules(s: { localDatabase: boolean }): Rule[] {
    const pending = "sum(synapse_federation_transaction_queue_pending_pdus)";
    const fs = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"';
    return [
        {
            alert: "SynapseDown",
            expr: 'up{job="synapse"} == 0',
            for: "1m",
            summary: "Synapse process {{ $labels.process }} does not answer",
        },
        {
            alert: "FederationSendQueueGrowing",
            expr: `${pending} > 100 and deriv(${pending}[15m:1m]) > 0`,
            for: "15m",
            summary: "{{ $value }} events wait to be sent to other servers, and the queue grows",
        },
        {
            alert: "CertificateExpiringSoon",
            expr: "matrix_certificate_expiry_timestamp_seconds - time() < 14 * 86400",
            for: "10m",
            summary: "The certificate of {{ $labels.name }} expires within 14 days: renewal is failing",
        },
        {
            alert: "DiskSpaceLow",
            expr: `node_filesystem_avail_bytes{${fs}} / node_filesystem_size_bytes{${fs}} < 0.10`,
            for: "10m",
            summary: "{{ $labels.mountpoint }} has less than 10 % free space",
        },
        {
            alert: "BackupTooOld",
            expr: "time() - matrix_backup_last_success_timestamp_seconds > 2 * matrix_backup_interval_seconds",
            for: "10m",
            summary: "The last backup is older than twice the backup schedule",
        },
        ...(s.localDatabase
            ? [
                  {
                      alert: "PostgresDown",
                      expr: 'pg_up == 0 or up{job="postgres"} == 0',
                      for: "1m",
                      summary: "PostgreSQL does not answer its exporter",
                  },
              ]
            : []),
    ];
}

export function renderAlertRules(s: { localDatabase: boolean }): string {
    const rules = alertRules(s).map((r) => ({
        alert: r.alert,
        expr: r.expr,
        for: r.for,
        labels: { severity: "critical" },
        annotations: { summary: r.summary },
    }));
    return (
        "# Managed by matrix-pulumi; edits are overwritten.\n" +
        stringify({ groups: [{ name: "matrix", rules }] }, { lineWidth: 0 })
    );
}

export interface AlertEmail {
    to: string;
    from: string;
    smarthost: string;
    username?: string;
    password?: string;
}

/** alertmanager.yml: alerts by e-mail when configured, else to a receiver that sends nothing. */
export function renderAlertmanagerConfig(s: { email?: AlertEmail }): string {
    const e = s.email;
    const receiver = e ? "email" : "none";
    const config = {
        route: {
            receiver,
            group_by: ["alertname"],
            group_wait: "30s",
            group_interval: "5m",
            repeat_interval: "4h",
        },
        receivers: [
            e
                ? {
                      name: "email",
                      email_configs: [
                          {
                              to: e.to,
                              from: e.from,
                              smarthost: e.smarthost,
                              require_tls: true,
                              send_resolved: true,
                              ...(e.username ? { auth_username: e.username, auth_password: e.password ?? "" } : {}),
                          },
                      ],
                  }
                : { name: "none" },
        ],
    };
    return "# Managed by matrix-pulumi; edits are overwritten.\n" + stringify(config, { lineWidth: 0 });
}

/** Each unit's drop-in: the distribution's defaults file set aside, our flags, loopback only. */
export function renderDropIn(service: MonitoringService, s: { retention: string; postgresPort?: number }): string {
    const P = MONITORING_PATHS;
    const exec: Record<MonitoringService, string[]> = {
        prometheus: [
            "/usr/bin/prometheus",
            `--config.file=${P.prometheusConfig}`,
            "--storage.tsdb.path=/var/lib/prometheus/metrics2/",
            `--storage.tsdb.retention.time=${s.retention}`,
            `--web.listen-address=${loopback(METRICS_PORTS.prometheus)}`,
        ],
        alertmanager: [
            "/usr/bin/prometheus-alertmanager",
            `--config.file=${P.alertmanagerConfig}`,
            "--storage.path=/var/lib/prometheus/alertmanager/",
            `--web.listen-address=${loopback(METRICS_PORTS.alertmanager)}`,
            // One instance: no gossip port.
            "--cluster.listen-address=",
        ],
        node: [
            "/usr/bin/prometheus-node-exporter",
            `--web.listen-address=${loopback(METRICS_PORTS.node)}`,
            `--collector.textfile.directory=${P.textfileDir}`,
        ],
        postgres: ["/usr/bin/prometheus-postgres-exporter", `--web.listen-address=${loopback(METRICS_PORTS.postgres)}`],
    };
    return [
        "# Managed by matrix-pulumi; edits are overwritten.",
        "[Service]",
        // An empty assignment resets the list: /etc/default/<unit> no longer applies.
        "EnvironmentFile=",
        ...(service === "postgres"
            ? // Quoted: systemd splits an unquoted assignment at its spaces.
              [
                  `Environment="DATA_SOURCE_NAME=user=prometheus host=/run/postgresql port=${s.postgresPort ?? 5432} dbname=postgres sslmode=disable"`,
              ]
            : []),
        "ExecStart=",
        `ExecStart=${exec[service].join(" ")}`,
        "",
    ].join("\n");
}

/** The services a host runs for these settings (the PostgreSQL exporter where PostgreSQL is). */
export function monitoringServices(s: { localDatabase: boolean }): MonitoringService[] {
    return (Object.keys(MONITORING_SERVICES) as MonitoringService[]).filter((k) => k !== "postgres" || s.localDatabase);
}

/**
 * The metrics no exporter has, in node exporter's textfile folder: each certificate's expiry,
 * the newest backup's time (or, before the first, when backups were set up) and the backup
 * schedule's period as systemd computes it.
 */
export function renderMetricsCommand(s: { backupSchedule: string }): string {
    const P = MONITORING_PATHS;
    return [
        "#!/bin/bash",
        "# Managed by matrix-pulumi: certificate expiry and backup age for Prometheus.",
        "set -euo pipefail",
        `out=${P.textfileDir}/matrix-pulumi.prom`,
        'tmp=$(mktemp "$out.XXXXXX")',
        "trap 'rm -f \"$tmp\"' EXIT",
        "{",
        "  echo '# HELP matrix_certificate_expiry_timestamp_seconds When the certificate nginx serves for a name expires.'",
        "  echo '# TYPE matrix_certificate_expiry_timestamp_seconds gauge'",
        "  for cert in /etc/letsencrypt/live/*/cert.pem; do",
        '    [ -f "$cert" ] || continue',
        '    name=$(basename "$(dirname "$cert")")',
        '    end=$(date -d "$(openssl x509 -enddate -noout -in "$cert" | cut -d= -f2)" +%s)',
        '    echo "matrix_certificate_expiry_timestamp_seconds{name=\\"$name\\"} $end"',
        "  done",
        `  newest=$({ find ${shq(SYNAPSE_PATHS.backups)} -mindepth 1 -maxdepth 1 -type d -name '2*Z' -printf '%f\\n' 2>/dev/null || true; } | sort | tail -n 1)`,
        '  if [ -n "$newest" ]; then',
        '    last=$(date -u -d "${newest:0:4}-${newest:4:2}-${newest:6:2} ${newest:9:2}:${newest:11:2}:${newest:13:2}" +%s)',
        "  else",
        "    # No backup yet: count from when the timer was set up.",
        `    last=$(stat -c %Y ${shq(BACKUP_PATHS.timer)} 2>/dev/null || date +%s)`,
        "  fi",
        "  echo '# HELP matrix_backup_last_success_timestamp_seconds When the newest backup was taken.'",
        "  echo '# TYPE matrix_backup_last_success_timestamp_seconds gauge'",
        '  echo "matrix_backup_last_success_timestamp_seconds $last"',
        // systemd 252 (Debian 12) says "Iter. #2", 257 (Debian 13) "Iteration #2".
        `  mapfile -t next < <(SYSTEMD_COLORS=0 systemd-analyze calendar --iterations=2 ${shq(s.backupSchedule)} | sed -n 's/^ *\\(Next elapse\\|Iter\\(\\.\\|ation\\) #2\\): //p')`,
        '  period=$(( $(date -d "${next[1]}" +%s) - $(date -d "${next[0]}" +%s) ))',
        "  echo '# HELP matrix_backup_interval_seconds The period of the backup schedule.'",
        "  echo '# TYPE matrix_backup_interval_seconds gauge'",
        '  echo "matrix_backup_interval_seconds $period"',
        '} > "$tmp"',
        'chmod 0644 "$tmp"',
        'mv -f "$tmp" "$out"',
        "trap - EXIT",
        "",
    ].join("\n");
}

export function renderMetricsUnits(): { service: string; timer: string } {
    return {
        service: [
            "# Managed by matrix-pulumi.",
            "[Unit]",
            "Description=Certificate and backup metrics for Prometheus (matrix-pulumi)",
            "",
            "[Service]",
            "Type=oneshot",
            `ExecStart=${MONITORING_PATHS.metricsCommand}`,
            "ProtectSystem=strict",
            `ReadWritePaths=${MONITORING_PATHS.textfileDir}`,
            "PrivateTmp=true",
            "NoNewPrivileges=true",
            "",
        ].join("\n"),
        timer: [
            "# Managed by matrix-pulumi.",
            "[Unit]",
            "Description=Refresh certificate and backup metrics every 5 minutes",
            "",
            "[Timer]",
            "OnBootSec=1min",
            "OnUnitActiveSec=5min",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ].join("\n"),
    };
}

const ALL_SERVICES = Object.keys(MONITORING_SERVICES) as MonitoringService[];

/** Folders the managed files go into; on delete (monitoring off, destroy) they go again. */
export function renderMonitoringDirsScript(opts: { user?: string } = {}): { create: string; delete: string } {
    const root = { owner: "root", group: "root" };
    return {
        create: script(
            [
                ...ensureDir(MONITORING_PATHS.dir, { mode: "0755", ...root }),
                ...ALL_SERVICES.flatMap((s) => ensureDir(dirOf(dropInPath(s)), { mode: "0755", ...root })),
                ...ensureDir(MONITORING_PATHS.textfileDir, { mode: "0755", owner: "prometheus", group: "prometheus" }),
                ...ensureDir(MONITORING_PATHS.stampDir, { mode: "0755", ...root }),
            ],
            opts,
        ),
        delete: script(
            [
                `rm -rf ${shq(MONITORING_PATHS.dir)} ${shq(MONITORING_PATHS.stampDir)} ${shq(`${MONITORING_PATHS.textfileDir}/matrix-pulumi.prom`)}`,
                ...ALL_SERVICES.map((s) => `rmdir ${shq(dirOf(dropInPath(s)))} 2>/dev/null || true`),
                "systemctl daemon-reload",
            ],
            opts,
        ),
    };
}

/**
 * Monitoring off (or destroy): every unit stopped and disabled before its files go; Prometheus'
 * data and the packages stay, so turning it on again keeps the history.
 */
export function renderMonitoringStopScript(opts: { user?: string } = {}): string {
    return script(
        [
            `systemctl disable --now matrix-pulumi-metrics.timer ${Object.values(MONITORING_SERVICES).join(" ")} 2>/dev/null || true`,
            'echo "monitoring stopped; Prometheus\' data kept in /var/lib/prometheus"',
        ],
        opts,
    );
}

/**
 * Check the configs with the distribution's own tools, then (re)start each service whose files
 * changed (its revision differs from the one it runs) or that is not running; the PostgreSQL
 * exporter's role made first (pg_monitor, peer authentication over the socket).
 */
export function renderMonitoringScript(
    s: {
        services: { service: MonitoringService; revision: string }[];
        /** The metrics command and its units (a change re-runs the step, which runs it). */
        metricsRevision: string;
        /** PostgreSQL on this host, the cluster the program manages: the exporter's role is made there. */
        cluster?: PostgresCluster;
    },
    opts: { user?: string } = {},
): string {
    const P = MONITORING_PATHS;
    return script(
        [
            `# metrics revision ${sha256(s.metricsRevision)}`,
            `promtool check config --syntax-only ${shq(P.prometheusConfig)} >/dev/null`,
            `promtool check rules ${shq(P.rules)} >/dev/null`,
            `amtool check-config ${shq(P.alertmanagerConfig)} >/dev/null`,
            ...(s.cluster
                ? [
                      `${superPsql(s.cluster)} -qAt -v ON_ERROR_STOP=1 -c "DO \\$\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'prometheus') THEN CREATE ROLE prometheus LOGIN; END IF; END \\$\\$; GRANT pg_monitor TO prometheus;"`,
                  ]
                : []),
            "systemctl daemon-reload",
            `systemctl enable --now matrix-pulumi-metrics.timer >/dev/null 2>&1`,
            `systemctl start matrix-pulumi-metrics.service`,
            ...s.services.flatMap(({ service, revision }) => {
                const unit = MONITORING_SERVICES[service];
                const r = sha256(revision);
                return [
                    `# ${unit} revision ${r}`,
                    `systemctl enable ${unit} >/dev/null 2>&1`,
                    ...restartOnRevision(unit, `${P.stampDir}/${unit}.revision`, r),
                ];
            }),
            // Ready when Prometheus answers (it reads its rules on start).
            ...untilHealthy(`http://${loopback(METRICS_PORTS.prometheus)}/-/ready`, 60, [
                'echo "Prometheus did not become ready within 60 s; see journalctl -u prometheus" >&2',
            ]),
        ],
        opts,
    );
}
