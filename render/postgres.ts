// PostgreSQL for Synapse: install script and the idempotent role/database SQL.
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { aptInstall, script, shq } from "./shell";

export interface DatabaseSettings {
    database: string;
    user: string;
}

/** The one PostgreSQL cluster the program manages (lib/preflight.ts picks it): Debian's `<major>/main`. */
export interface PostgresCluster {
    version: string;
    name: string;
    port: number;
}

/** The cluster's folder under /etc/postgresql (Debian's layout: <version>/<name>). */
export function clusterConfDir(c: PostgresCluster): string {
    return `/etc/postgresql/${c.version}/${c.name}`;
}

/** The cluster's systemd unit (postgresql@<version>-<name>). */
export function clusterUnit(c: PostgresCluster): string {
    return `postgresql@${c.version}-${c.name}`;
}

/** psql as the postgres superuser, on the program's cluster (pg_wrapper's `--cluster`), never the wrapper's default. */
export function superPsql(c: PostgresCluster): string {
    return `runuser -u postgres -- psql --cluster ${shq(`${c.version}/${c.name}`)}`;
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
 * The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677, as libpq's
 * PQencryptPasswordConn makes it). The SQL carries this, never the plaintext, so no server log
 * or psql error echo can reveal the password. The salt is derived from the password and role so
 * that the same inputs give the same SQL (a fresh salt would re-run the step on every update).
 */
export function scramVerifier(user: string, password: string, iterations = 4096): string {
    const salt = createHmac("sha256", password).update(`matrix-pulumi salt for ${user}`).digest().subarray(0, 16);
    const salted = pbkdf2Sync(password.normalize("NFKC"), salt, iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    const b64 = (b: Buffer) => b.toString("base64");
    return `SCRAM-SHA-256$${iterations}:${b64(salt)}$${b64(storedKey)}:${b64(serverKey)}`;
}

/**
 * Idempotent SQL, run by psql as the postgres superuser with ON_ERROR_STOP. Fed on stdin: it
 * holds the role's password verifier. Refuses (exit 3) an existing database whose locale or
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
        `ALTER ROLE ${sqlIdent(s.user)} WITH LOGIN PASSWORD ${sqlLiteral(scramVerifier(s.user, password))};`,
        // CREATE DATABASE cannot run inside a DO block; \gexec runs it only when missing.
        `SELECT 'CREATE DATABASE ' || quote_ident(${db}) || ' OWNER ' || quote_ident(${sqlLiteral(s.user)}) ||`,
        `       ' TEMPLATE template0 ENCODING ''UTF8'' LC_COLLATE ''C'' LC_CTYPE ''C'''`,
        ` WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = ${db}) \\gexec`,
        `GRANT ALL PRIVILEGES ON DATABASE ${sqlIdent(s.database)} TO ${sqlIdent(s.user)};`,
        "",
    ].join("\n");
}

export const POSTGRES_APT_PACKAGES = ["postgresql", "postgresql-contrib"];
/** pg_dump, pg_restore and psql, for a database on another host. */
export const POSTGRES_CLIENT_APT_PACKAGES = ["postgresql-client"];

/**
 * Install PostgreSQL (Debian's packages) and make sure the program's cluster runs on the port the
 * preflight read (or predicted, when the install creates it); checks the version.
 */
export function renderPostgresInstallScript(c: PostgresCluster, opts: { user?: string } = {}): string {
    const id = `${c.version}/${c.name}`;
    return script(
        [
            ...aptInstall(POSTGRES_APT_PACKAGES),
            // Debian's postgresql-<major> creates <major>/main; a host where it was dropped gets it back.
            `if [ ! -f ${shq(`${clusterConfDir(c)}/postgresql.conf`)} ]; then pg_createcluster ${shq(c.version)} ${shq(c.name)} --port ${c.port} >/dev/null; fi`,
            `port=$(pg_conftool -s ${shq(c.version)} ${shq(c.name)} show port)`,
            `if [ "$port" != ${shq(c.port)} ]; then`,
            `  echo "PostgreSQL cluster ${id} is on port $port, not ${c.port} as the preflight read it (did something take the port meanwhile?): run pulumi up again; the preflight reads the port anew" >&2`,
            "  exit 1",
            "fi",
            "systemctl enable --now postgresql >/dev/null",
            `systemctl start ${shq(clusterUnit(c))}`,
            // Wait until the cluster accepts connections (first start after install).
            `for _ in $(seq 1 60); do ${superPsql(c)} -qAtc "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done`,
            `version=$(${superPsql(c)} -qAtc "SHOW server_version_num")`,
            'if [ "$version" -lt 140000 ]; then echo "PostgreSQL $version is too old: Synapse needs 14 or newer" >&2; exit 1; fi',
            `echo "postgresql $version ready: cluster ${id}, port ${c.port}"`,
        ],
        opts,
    );
}

/** Run the SQL that arrives on stdin as the postgres superuser. */
export function renderDatabaseScript(s: DatabaseSettings, c: PostgresCluster, opts: { user?: string } = {}): string {
    return script(
        [
            `# database ${s.database}, role ${s.user}; the SQL (with the password) comes on stdin`,
            `${superPsql(c)} -X -q -v ON_ERROR_STOP=1 -d postgres -f - >/dev/null`,
            `${superPsql(c)} -X -qAt -d postgres -c ${shq(
                `SELECT datname, pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = ${sqlLiteral(s.database)}`,
            )}`,
        ],
        opts,
    );
}

/** Where Synapse reaches PostgreSQL on the same host: loopback, on the cluster's port. */
export const POSTGRES_LOOPBACK = "127.0.0.1";

/**
 * The database's own lifetime as a step: its create only names what it keeps; its delete, on
 * destroy, keeps the database and role, or with `purge` (matrix:purgeOnDestroy) drops them.
 */
export function renderDatabaseDataScript(
    s: DatabaseSettings & { purge: boolean },
    c: PostgresCluster,
    opts: { user?: string } = {},
): { create: string; delete: string } {
    const create = script([`echo "database ${s.database}, role ${s.user}"`], opts);
    if (!s.purge) return { create, delete: script([`echo "kept database ${s.database}"`], opts) };
    return {
        create,
        delete: script(
            [
                `${superPsql(c)} -X -q -v ON_ERROR_STOP=1 -d postgres -c ${shq(`DROP DATABASE IF EXISTS ${sqlIdent(s.database)} WITH (FORCE)`)}`,
                `${superPsql(c)} -X -q -v ON_ERROR_STOP=1 -d postgres -c ${shq(`DROP ROLE IF EXISTS ${sqlIdent(s.user)}`)}`,
                `echo "dropped database ${s.database} and role ${s.user}"`,
            ],
            opts,
        ),
    };
}
