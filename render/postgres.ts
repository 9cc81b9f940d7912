// PostgreSQL for Synapse: install script and the idempotent role/database SQL.
import { aptInstall, script, shq } from "./shell";

export interface DatabaseSettings {
    database: string;
    user: string;
}

/** SQL string literal. */
export function sqlLiteral(value: string): string {
    return `'${value.replace(/'/g, "''")}'`;
}

/** SQL identifier, always quoted. */
export function sqlIdent(value: string): string {
    return `"${value.replace(/"/g, '""')}"`;
}

/**
 * Idempotent SQL, run by psql as the postgres superuser with ON_ERROR_STOP. Fed on stdin:
 * it holds the role's password. Refuses (exit 3) an existing database whose locale or
 * encoding Synapse would reject, before touching anything.
 */
export function renderDatabaseSql(s: DatabaseSettings, password: string): string {
    const db = sqlLiteral(s.database);
    return [
        "\\set ON_ERROR_STOP on",
        "DO $check$ BEGIN",
        `  IF EXISTS (SELECT 1 FROM pg_database WHERE datname = ${db}`,
        `             AND (datcollate <> 'C' OR datctype <> 'C' OR pg_encoding_to_char(encoding) <> 'UTF8')) THEN`,
        `    RAISE EXCEPTION 'database % exists with encoding %, LC_COLLATE %, LC_CTYPE %; Synapse needs UTF8 with C and C',`,
        `      ${db}, (SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = ${db}),`,
        `      (SELECT datcollate FROM pg_database WHERE datname = ${db}), (SELECT datctype FROM pg_database WHERE datname = ${db})`,
        `      USING HINT = 'Dump it, drop it, and re-run: the program creates it with TEMPLATE template0 ENCODING UTF8 LC_COLLATE C LC_CTYPE C; or set matrix:postgres.database to a new name.';`,
        "  END IF;",
        "END $check$;",
        "DO $role$ BEGIN",
        `  CREATE ROLE ${sqlIdent(s.user)} LOGIN;`,
        "EXCEPTION WHEN duplicate_object THEN NULL;",
        "END $role$;",
        // Set every run, so a password rotated in the stack reaches the server.
        `ALTER ROLE ${sqlIdent(s.user)} WITH LOGIN PASSWORD ${sqlLiteral(password)};`,
        // CREATE DATABASE cannot run inside a DO block; \gexec runs it only when missing.
        `SELECT 'CREATE DATABASE ' || quote_ident(${db}) || ' OWNER ' || quote_ident(${sqlLiteral(s.user)}) ||`,
        `       ' TEMPLATE template0 ENCODING ''UTF8'' LC_COLLATE ''C'' LC_CTYPE ''C'''`,
        ` WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = ${db}) \\gexec`,
        `GRANT ALL PRIVILEGES ON DATABASE ${sqlIdent(s.database)} TO ${sqlIdent(s.user)};`,
        "",
    ].join("\n");
}

/** Install PostgreSQL (Debian/Ubuntu packages) and make sure it runs; checks the version. */
export function renderPostgresInstallScript(opts: { user?: string } = {}): string {
    return script(
        [
            ...aptInstall(["postgresql", "postgresql-contrib"]),
            "systemctl enable --now postgresql >/dev/null",
            // Wait until the cluster accepts connections (first start after install).
            'for _ in $(seq 1 60); do runuser -u postgres -- psql -qAtc "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done',
            'version=$(runuser -u postgres -- psql -qAtc "SHOW server_version_num")',
            'if [ "$version" -lt 140000 ]; then echo "PostgreSQL $version is too old: Synapse needs 14 or newer" >&2; exit 1; fi',
            'echo "postgresql $version ready"',
        ],
        opts,
    );
}

/** Run the SQL that arrives on stdin as the postgres superuser. */
export function renderDatabaseScript(s: DatabaseSettings, opts: { user?: string } = {}): string {
    return script(
        [
            `# database ${s.database}, role ${s.user}; the SQL (with the password) comes on stdin`,
            "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -f - >/dev/null",
            `runuser -u postgres -- psql -X -qAt -d postgres -c ${shq(
                `SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = ${sqlLiteral(s.database)}`,
            )}`,
        ],
        opts,
    );
}
