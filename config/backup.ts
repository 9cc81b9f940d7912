// matrix:backup: the scheduled database and media backups (docs/operations.md: Backups).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { int } from "./fields";

export const backupSchema = z.strictObject({
    schedule: z
        .string()
        .regex(/^[A-Za-z0-9 ,:*./~+-]{1,100}$/, {
            error: 'expected a systemd OnCalendar expression such as "daily" or "*-*-* 03:30"',
        })
        .default(DEFAULTS.backup.schedule)
        .meta({ description: "systemd `OnCalendar` of the backup timer (checked by the host's own systemd)." }),
    retention: int("expected a whole number of backups to keep, from 1 to 365")
        .refine((n) => n >= 1 && n <= 365, { error: "expected a whole number of backups to keep, from 1 to 365" })
        .default(DEFAULTS.backup.retention)
        .meta({ description: "Scheduled backups kept (1–365)." }),
});
