// matrix:monitoring: Prometheus, exporters and Alertmanager on the host (docs/monitoring.md).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool } from "./fields";

const DURATION_ERROR = 'expected a duration such as "15d" or "12w" (a whole number of hours, days or weeks)';

export const monitoringSchema = z.strictObject({
    enabled: bool().default(DEFAULTS.monitoring.enabled).meta({
        description:
            "Prometheus, the node and PostgreSQL exporters and Alertmanager on the host, loopback only, with alert rules.",
    }),
    retention: z
        .string({ error: DURATION_ERROR })
        .regex(/^[1-9][0-9]{0,4}[hdw]$/, { error: DURATION_ERROR })
        .default(DEFAULTS.monitoring.retention)
        .meta({ description: "How long Prometheus keeps samples (`<n>h`, `<n>d`, `<n>w`)." }),
    scrapeInterval: z
        .string({ error: 'expected an interval such as "30s" or "1m"' })
        .regex(/^([1-9][0-9]?s|[1-5]m)$/, { error: 'expected an interval from "1s" to "5m", such as "30s"' })
        .default(DEFAULTS.monitoring.scrapeInterval)
        .meta({ description: "How often Prometheus scrapes and evaluates the rules (`1s`–`5m`)." }),
    email: z
        .strictObject({
            to: z
                .email({ error: "expected the address alerts go to, such as ops@example.org" })
                .meta({ description: "Where alerts (and their resolution) are mailed." }),
            from: z
                .email({ error: "expected the sender address, such as alertmanager@example.org" })
                .meta({ description: "The sender address." }),
            smarthost: z
                .string()
                .regex(/^[A-Za-z0-9.-]+:[0-9]{1,5}$/, {
                    error: "expected the SMTP server as host:port, such as smtp.example.org:587",
                })
                .meta({ description: "The SMTP server as `host:port` (STARTTLS is required)." }),
            username: z
                .string()
                .min(1)
                .optional()
                .meta({ description: "SMTP login; its password is the secret `secrets.smtpPassword`." }),
        })
        .optional()
        .meta({
            description: "Alertmanager mails alerts over STARTTLS.",
            defaultText: "none (alerts only in Alertmanager)",
        }),
});
