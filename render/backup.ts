// Scheduled backups of a homeserver's state, and the command that restores one.
import { ensureDir, script, shq, writeFile } from "./shell";
import { DATABASE_CLIENT_COMMAND } from "./databaseHost";
import { SYNAPSE_LISTEN, SYNAPSE_PATHS, SYNAPSE_SERVICE, SYNAPSE_USER } from "./synapse";
import { SYNAPSE_TARGET, WORKER_SERVICE } from "./workers";

export const BACKUP_PATHS = {
    backupCommand: "/usr/local/sbin/matrix-synapse-backup",
    restoreCommand: "/usr/local/sbin/matrix-synapse-restore",
    service: "/etc/systemd/system/matrix-synapse-backup.service",
    timer: "/etc/systemd/system/matrix-synapse-backup.timer",
} as const;

/**
 * One backup: a folder <UTC time>/ with database.dump (pg_dump -Fc, one-time keys left out, as
 * Synapse advises), signing.key and media_store.tar; the oldest beyond `retention` are removed.
 */
export function renderBackupCommand(s: { retention: number }): string {
    const p = SYNAPSE_PATHS;
    return [
        "#!/bin/bash",
        "# Managed by matrix-pulumi: back up Synapse's database, signing key and media store.",
        "set -euo pipefail",
        "umask 077",
        `dest=${p.backups}`,
        'dir="$dest/$(date -u +%Y%m%dT%H%M%SZ)"',
        'tmp="$dir.part"',
        'install -d -m 0700 "$dest"',
        'rm -rf "$tmp" && mkdir "$tmp"',
        // Here or on the database's own host, as secrets.yaml says (matrix-synapse-db).
        `${DATABASE_CLIENT_COMMAND} dump > "$tmp/database.dump"`,
        `cp -p ${p.signingKey} "$tmp/signing.key"`,
        `tar -C ${p.dataDir} -cf "$tmp/media_store.tar" media_store`,
        'mv "$tmp" "$dir"',
        `# Keep the newest ${s.retention}; pre-upgrade dumps are files, not folders, and stay.`,
        `find "$dest" -mindepth 1 -maxdepth 1 -type d -name '2*Z' | sort | head -n -${s.retention} | xargs -r rm -rf`,
        'echo "backup: $dir"',
        "",
    ].join("\n");
}

/** Restore a backup folder in place: database (C locale), signing key, media store; then start. */
export function renderRestoreCommand(): string {
    const p = SYNAPSE_PATHS;
    return [
        "#!/bin/bash",
        "# Managed by matrix-pulumi: matrix-synapse-restore /var/backups/matrix-synapse/<time>",
        "set -euo pipefail",
        "src=${1:?usage: matrix-synapse-restore BACKUP_FOLDER}",
        "for f in database.dump signing.key media_store.tar; do",
        '  [ -f "$src/$f" ] || { echo "$src has no $f: not a backup folder" >&2; exit 1; }',
        "done",
        // Every Synapse process stops (workers too), the database is emptied and restored.
        `systemctl stop ${shq(`${WORKER_SERVICE}@*.service`)} ${SYNAPSE_SERVICE}`,
        `${DATABASE_CLIENT_COMMAND} restore < "$src/database.dump"`,
        `install -m 0600 -o ${SYNAPSE_USER} -g ${SYNAPSE_USER} "$src/signing.key" ${p.signingKey}`,
        `rm -rf ${p.mediaStore}`,
        `tar -C ${p.dataDir} -xf "$src/media_store.tar"`,
        `chown -R ${SYNAPSE_USER}:${SYNAPSE_USER} ${p.mediaStore}`,
        `systemctl start ${SYNAPSE_SERVICE}`,
        // With workers, they come back with their target (enabled only when there are workers).
        `if systemctl is-enabled --quiet ${SYNAPSE_TARGET} 2>/dev/null; then systemctl start ${SYNAPSE_TARGET}; fi`,
        `until curl -fsS --max-time 5 http://${SYNAPSE_LISTEN.address}:${SYNAPSE_LISTEN.port}/health >/dev/null 2>&1; do sleep 0.5; done`,
        'echo "restored $src"',
        "",
    ].join("\n");
}

export function renderBackupUnits(s: { schedule: string }): { service: string; timer: string } {
    return {
        service: [
            "# Managed by matrix-pulumi.",
            "[Unit]",
            "Description=Back up Synapse (database, signing key, media)",
            "After=postgresql.service",
            "",
            "[Service]",
            "Type=oneshot",
            `ExecStart=${BACKUP_PATHS.backupCommand}`,
            "",
        ].join("\n"),
        timer: [
            "# Managed by matrix-pulumi.",
            "[Unit]",
            "Description=Scheduled Synapse backups",
            "",
            "[Timer]",
            `OnCalendar=${s.schedule}`,
            "Persistent=true",
            "RandomizedDelaySec=15min",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ].join("\n"),
    };
}

export interface BackupSettings {
    schedule: string;
    retention: number;
}

/** Install the backup and restore commands and the timer. */
export function renderBackupScript(s: BackupSettings, opts: { user?: string } = {}): string {
    const root = { owner: "root", group: "root" };
    const units = renderBackupUnits(s);
    return script(
        [
            ...ensureDir(SYNAPSE_PATHS.backups, { mode: "0700", ...root }),
            ...writeFile(BACKUP_PATHS.backupCommand, renderBackupCommand(s), { mode: "0755", ...root }),
            ...writeFile(BACKUP_PATHS.restoreCommand, renderRestoreCommand(), { mode: "0755", ...root }),
            ...writeFile(BACKUP_PATHS.service, units.service, { mode: "0644", ...root }),
            ...writeFile(BACKUP_PATHS.timer, units.timer, { mode: "0644", ...root }),
            "systemctl daemon-reload",
            "systemctl enable --now matrix-synapse-backup.timer >/dev/null 2>&1",
        ],
        opts,
    );
}

/** On destroy: the timer goes; the backups themselves always stay. */
export function renderBackupDeleteScript(opts: { user?: string } = {}): string {
    return script(
        [
            "systemctl disable --now matrix-synapse-backup.timer 2>/dev/null || true",
            `rm -f ${[BACKUP_PATHS.service, BACKUP_PATHS.timer].map(shq).join(" ")}`,
            "systemctl daemon-reload",
            `echo "kept the backups in ${SYNAPSE_PATHS.backups}"`,
        ],
        opts,
    );
}
