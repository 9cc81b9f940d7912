// The monitoring configs in the distribution's own tools: promtool and amtool accept what the
// program renders, and `promtool test rules` plays each alert against series that must (and must
// not) fire it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, it } from "@jest/globals";
import { stringify } from "yaml";
import { renderAlertmanagerConfig, renderAlertRules, renderPrometheusConfig } from "../../render/monitoring";
import { WORKER_PRESETS } from "../../render/workers";
import { run } from "./tools";

const dir = mkdtempSync(path.join(tmpdir(), "matrix-monitoring-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    return p;
};

describe("Prometheus and Alertmanager read the rendered configs", () => {
    it("promtool accepts prometheus.yml for every layout", () => {
        for (const [label, workers, localDatabase] of [
            ["one process, local database", WORKER_PRESETS.none, true],
            ["small workers, remote database", WORKER_PRESETS.small, false],
        ] as const) {
            const p = file("prometheus.yml", renderPrometheusConfig({ scrapeInterval: "30s", workers, localDatabase }));
            const r = run("promtool", ["check", "config", "--syntax-only", p]);
            assert.equal(r.status, 0, `${label}: ${r.stdout}${r.stderr}`);
        }
    });

    it("promtool accepts the rules, with and without PostgreSQL's", () => {
        for (const localDatabase of [true, false]) {
            const r = run("promtool", ["check", "rules", file("rules.yml", renderAlertRules({ localDatabase }))]);
            assert.equal(r.status, 0, r.stdout + r.stderr);
        }
    });

    it("amtool accepts alertmanager.yml with no receiver, and with SMTP and a login", () => {
        const configs = [
            renderAlertmanagerConfig({}),
            renderAlertmanagerConfig({
                email: {
                    to: "ops@example.org",
                    from: "am@example.org",
                    smarthost: "smtp.example.org:587",
                    username: "am",
                    password: 'it\'s: a "secret"',
                },
            }),
        ];
        for (const c of configs) {
            const r = run("amtool", ["check-config", file("alertmanager.yml", c)]);
            assert.equal(r.status, 0, r.stdout + r.stderr);
        }
    });
});

/** An alert as promtool expects it: our severity, the series' labels, the rendered summary. */
const alert = (labels: Record<string, string>, summary: string) => ({
    exp_labels: { severity: "critical", ...labels },
    exp_annotations: { summary },
});

describe("each alert fires when it should, and not before (promtool test rules)", () => {
    const DAY = 86400;
    const cases = [
        {
            name: "SynapseDown after a minute without an answer",
            interval: "1m",
            input_series: [{ series: 'up{job="synapse",process="main"}', values: "1 1 0 0 0 0" }],
            alert_rule_test: [
                { eval_time: "2m", alertname: "SynapseDown", exp_alerts: [] },
                {
                    eval_time: "4m",
                    alertname: "SynapseDown",
                    exp_alerts: [alert({ job: "synapse", process: "main" }, "Synapse process main does not answer")],
                },
            ],
        },
        {
            name: "FederationSendQueueGrowing for a queue that grows, not for one that stays long",
            interval: "1m",
            input_series: [
                { series: 'synapse_federation_transaction_queue_pending_pdus{process="growing"}', values: "0+10x60" },
            ],
            alert_rule_test: [
                { eval_time: "15m", alertname: "FederationSendQueueGrowing", exp_alerts: [] },
                {
                    eval_time: "40m",
                    alertname: "FederationSendQueueGrowing",
                    exp_alerts: [alert({}, "400 events wait to be sent to other servers, and the queue grows")],
                },
            ],
        },
        {
            name: "FederationSendQueueGrowing not for a long queue that does not grow",
            interval: "1m",
            input_series: [
                { series: 'synapse_federation_transaction_queue_pending_pdus{process="stuck"}', values: "500x60" },
            ],
            alert_rule_test: [{ eval_time: "40m", alertname: "FederationSendQueueGrowing", exp_alerts: [] }],
        },
        {
            name: "CertificateExpiringSoon inside 14 days of the end",
            // Days of samples: every 5 minutes (within Prometheus' 5-minute lookback).
            interval: "5m",
            // Expires 20 days after the epoch promtool starts at.
            input_series: [
                {
                    series: 'matrix_certificate_expiry_timestamp_seconds{name="matrix.example.org"}',
                    values: `${20 * DAY}x2100`,
                },
            ],
            alert_rule_test: [
                { eval_time: "5d", alertname: "CertificateExpiringSoon", exp_alerts: [] },
                {
                    eval_time: "7d",
                    alertname: "CertificateExpiringSoon",
                    exp_alerts: [
                        alert(
                            { name: "matrix.example.org" },
                            "The certificate of matrix.example.org expires within 14 days: renewal is failing",
                        ),
                    ],
                },
            ],
        },
        {
            name: "DiskSpaceLow under 10 % free, not at 20 %",
            interval: "1m",
            input_series: [
                { series: 'node_filesystem_avail_bytes{fstype="ext4",mountpoint="/"}', values: "20x5 5x20" },
                { series: 'node_filesystem_size_bytes{fstype="ext4",mountpoint="/"}', values: "100x25" },
                // tmpfs is not watched.
                { series: 'node_filesystem_avail_bytes{fstype="tmpfs",mountpoint="/run"}', values: "1x25" },
                { series: 'node_filesystem_size_bytes{fstype="tmpfs",mountpoint="/run"}', values: "100x25" },
            ],
            alert_rule_test: [
                { eval_time: "5m", alertname: "DiskSpaceLow", exp_alerts: [] },
                {
                    eval_time: "20m",
                    alertname: "DiskSpaceLow",
                    exp_alerts: [alert({ fstype: "ext4", mountpoint: "/" }, "/ has less than 10 % free space")],
                },
            ],
        },
        {
            name: "BackupTooOld past twice a daily schedule",
            interval: "5m",
            input_series: [
                { series: "matrix_backup_last_success_timestamp_seconds", values: "0x600" },
                { series: "matrix_backup_interval_seconds", values: `${DAY}x600` },
            ],
            alert_rule_test: [
                { eval_time: "47h", alertname: "BackupTooOld", exp_alerts: [] },
                {
                    eval_time: "49h",
                    alertname: "BackupTooOld",
                    exp_alerts: [alert({}, "The last backup is older than twice the backup schedule")],
                },
            ],
        },
        {
            name: "PostgresDown when the exporter cannot reach PostgreSQL",
            interval: "1m",
            input_series: [{ series: 'pg_up{job="postgres"}', values: "1 0 0 0 0" }],
            alert_rule_test: [
                { eval_time: "1m", alertname: "PostgresDown", exp_alerts: [] },
                {
                    eval_time: "3m",
                    alertname: "PostgresDown",
                    exp_alerts: [alert({ job: "postgres" }, "PostgreSQL does not answer its exporter")],
                },
            ],
        },
    ];

    for (const { name, ...test } of cases) {
        it(name, () => {
            const rules = file("rules.yml", renderAlertRules({ localDatabase: true }));
            // Rules evaluated as often as the series have samples.
            const spec = file(
                "test.yml",
                stringify({ rule_files: [rules], evaluation_interval: test.interval, tests: [test] }, { lineWidth: 0 }),
            );
            const r = run("promtool", ["test", "rules", spec]);
            assert.equal(r.status, 0, r.stdout + r.stderr);
        });
    }
});
