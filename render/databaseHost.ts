// PostgreSQL on a host of its own (matrix:database.machine): TLS with a CA made on that host,
// listening on the address Synapse reaches, admitting Synapse's address alone (SCRAM over TLS);
// and, on the Synapse host, the one command every dump and restore goes through.
import { script, shq } from "./shell";
import { SYNAPSE_PATHS } from "./synapseBase";
import { clusterConfDir, clusterUnit, sqlIdent, superPsql, type PostgresCluster } from "./postgres";

export const DATABASE_HOST_PATHS = {
    /** The CA and server certificate, made on the database host (the CA's key never leaves it). */
    tlsDir: "/etc/postgresql/matrix-pulumi",
    caKey: "/etc/postgresql/matrix-pulumi/ca.key",
    caCertificate: "/etc/postgresql/matrix-pulumi/ca.pem",
    serverKey: "/etc/postgresql/matrix-pulumi/server.key",
    serverCertificate: "/etc/postgresql/matrix-pulumi/server.pem",
    /** In the cluster's conf.d (Debian's postgresql.conf includes it). */
    confName: "matrix-pulumi.conf",
    hbaBegin: "# BEGIN matrix-pulumi: Synapse over TLS",
    hbaEnd: "# END matrix-pulumi",
} as const;

/** On the Synapse host: the database's CA, which Synapse verifies the server against. */
export const DATABASE_CA_PATH = SYNAPSE_PATHS.databaseCa;
/** On the Synapse host: dumps and restores of the database Synapse uses, wherever it is. */
export const DATABASE_CLIENT_COMMAND = "/usr/local/sbin/matrix-synapse-db";

export interface DatabaseNetwork {
    /** The address PostgreSQL listens on and Synapse connects to (the certificate's name). */
    listenAddress: string;
    /** The only address admitted: where Synapse's connections come from. */
    clientAddress: string;
    database: string;
    user: string;
}

/** The cluster's folder and unit, as shell variables. */
function clusterLines(c: PostgresCluster): string[] {
    return [`etc=${shq(clusterConfDir(c))}`, `unit=${shq(clusterUnit(c))}`];
}

/**
 * Make the CA and the server certificate once (the certificate again when it nears expiry or
 * names another address), expose PostgreSQL on the listen address with TLS only for Synapse's
 * address, restart or reload as needed, and print the CA certificate (public) for Synapse.
 */
export function renderDatabaseNetworkScript(
    n: DatabaseNetwork,
    c: PostgresCluster,
    opts: { user?: string } = {},
): string {
    const P = DATABASE_HOST_PATHS;
    const conf = [
        "# Managed by matrix-pulumi: PostgreSQL reachable by Synapse over TLS.",
        `listen_addresses = 'localhost,${n.listenAddress}'`,
        "ssl = on",
        `ssl_cert_file = '${P.serverCertificate}'`,
        `ssl_key_file = '${P.serverKey}'`,
        "ssl_min_protocol_version = 'TLSv1.2'",
        "password_encryption = 'scram-sha-256'",
        "",
    ].join("\n");
    const hba = [
        P.hbaBegin,
        `hostssl ${sqlIdent(n.database)} ${sqlIdent(n.user)} ${n.clientAddress}/32 scram-sha-256`,
        P.hbaEnd,
    ].join("\n");
    return script(
        [
            ...clusterLines(c),
            `install -d -m 0750 -o root -g postgres ${shq(P.tlsDir)}`,
            `if [ ! -s ${shq(P.caKey)} ]; then`,
            `  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \\`,
            `    -subj '/CN=matrix-pulumi PostgreSQL CA' -keyout ${shq(P.caKey)} -out ${shq(P.caCertificate)} 2>/dev/null)`,
            `  chmod 0644 ${shq(P.caCertificate)}`,
            "fi",
            // A certificate for the listen address, valid 825 days, renewed with 30 days left.
            `if ! openssl x509 -checkend 2592000 -noout -in ${shq(P.serverCertificate)} >/dev/null 2>&1 \\`,
            `  || ! openssl x509 -noout -ext subjectAltName -in ${shq(P.serverCertificate)} 2>/dev/null | grep -qw ${shq(`IP Address:${n.listenAddress}`)}; then`,
            "  work=$(mktemp -d)",
            `  (umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj ${shq(`/CN=${n.listenAddress}`)} \\`,
            '    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null)',
            `  printf 'subjectAltName=IP:%s\\nextendedKeyUsage=serverAuth\\n' ${shq(n.listenAddress)} > "$work/ext"`,
            `  openssl x509 -req -in "$work/server.csr" -CA ${shq(P.caCertificate)} -CAkey ${shq(P.caKey)} -CAcreateserial \\`,
            `    -days 825 -extfile "$work/ext" -out "$work/server.pem" 2>/dev/null`,
            `  install -m 0600 -o postgres -g postgres "$work/server.key" ${shq(P.serverKey)}`,
            `  install -m 0644 -o root -g root "$work/server.pem" ${shq(P.serverCertificate)}`,
            '  rm -rf "$work"',
            "  echo 'server certificate issued' >&2",
            "  changed=restart",
            "fi",
            `want=${shq(conf)}`,
            `if [ "$(cat "$etc/conf.d/${P.confName}" 2>/dev/null || true)" != "$want" ]; then`,
            `  install -d -m 0755 -o postgres -g postgres "$etc/conf.d"`,
            `  printf '%s\\n' "$want" > "$etc/conf.d/${P.confName}"`,
            "  changed=restart",
            "fi",
            // Our block in pg_hba.conf, replaced whole; the distribution's lines stay as they are.
            `block=${shq(hba)}`,
            `current=$(sed -n ${shq(`/^${P.hbaBegin}$/,/^${P.hbaEnd}$/p`)} "$etc/pg_hba.conf")`,
            'if [ "$current" != "$block" ]; then',
            `  sed -i ${shq(`/^${P.hbaBegin}$/,/^${P.hbaEnd}$/d`)} "$etc/pg_hba.conf"`,
            '  printf \'%s\\n\' "$block" >> "$etc/pg_hba.conf"',
            "  changed=${changed:-reload}",
            "fi",
            'case "${changed:-}" in',
            '  restart) systemctl restart "$unit"; echo "postgresql restarted" >&2 ;;',
            '  reload) systemctl reload "$unit"; echo "postgresql reloaded" >&2 ;;',
            "esac",
            `for _ in $(seq 1 60); do ${superPsql(c)} -qAtc 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done`,
            // The only output: the CA certificate, public, for Synapse's host.
            `cat ${shq(P.caCertificate)}`,
        ],
        opts,
    );
}

/** On destroy: PostgreSQL goes back to loopback only; its data (and the CA) stay. */
export function renderDatabaseNetworkDeleteScript(c: PostgresCluster, opts: { user?: string } = {}): string {
    const P = DATABASE_HOST_PATHS;
    return script(
        [
            ...clusterLines(c),
            `rm -f "$etc/conf.d/${P.confName}"`,
            `sed -i ${shq(`/^${P.hbaBegin}$/,/^${P.hbaEnd}$/d`)} "$etc/pg_hba.conf"`,
            'systemctl restart "$unit"',
            'echo "PostgreSQL listens on loopback only again; the database is kept"',
        ],
        opts,
    );
}

/**
 * The command (on the Synapse host) every dump and restore goes through: `dump` writes the
 * database Synapse uses (as secrets.yaml names it) to stdout, `restore` replaces its content from
 * stdin, `name` prints its name. On this host: as the postgres superuser. On another host: as
 * Synapse's role, over TLS with the server verified, the password in a 0600 file for the run.
 */
export function renderDatabaseClientCommand(): string {
    const dumpArgs = "-Fc --exclude-table-data e2e_one_time_keys_json";
    return [
        "#!/bin/bash",
        "# Managed by matrix-pulumi. usage: matrix-synapse-db dump > FILE | restore < FILE | name",
        "set -euo pipefail",
        "cmd=${1:?usage: matrix-synapse-db dump|restore|name}",
        "tmp=$(mktemp -d)",
        "trap 'rm -rf \"$tmp\"' EXIT",
        // Set by the Python below from secrets.yaml.
        "db='' role='' local='' port=''",
        `eval "$(${SYNAPSE_PATHS.venv}/bin/python - "$tmp/pgpass" <<'PY'`,
        "import os, shlex, sys, yaml",
        `a = yaml.safe_load(open("${SYNAPSE_PATHS.secretsConfig}"))["database"]["args"]`,
        'local = str(a.get("host", "localhost")) in ("127.0.0.1", "localhost", "::1")',
        'print("db=" + shlex.quote(a["dbname"]))',
        'print("role=" + shlex.quote(a["user"]))',
        'print("local=" + ("1" if local else "0"))',
        'print("port=" + shlex.quote(str(a.get("port", 5432))))',
        "if not local:",
        "    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)",
        '    esc = lambda v: str(v).replace("\\\\", "\\\\\\\\").replace(":", "\\\\:")',
        '    os.write(fd, (":".join(esc(a[k]) for k in ("host", "port", "dbname", "user", "password")) + "\\n").encode())',
        "    os.close(fd)",
        '    env = {"PGHOST": a["host"], "PGPORT": a["port"], "PGUSER": a["user"], "PGDATABASE": a["dbname"],',
        '           "PGSSLMODE": a.get("sslmode", "verify-full"), "PGSSLROOTCERT": a.get("sslrootcert", ""),',
        '           "PGPASSFILE": sys.argv[1]}',
        "    for k, v in env.items():",
        '        print("export %s=%s" % (k, shlex.quote(str(v))))',
        "PY",
        ')"',
        'case "$cmd" in',
        '  name) echo "$db" ;;',
        "  dump)",
        `    if [ "$local" = 1 ]; then runuser -u postgres -- pg_dump -p "$port" ${dumpArgs} "$db"; else pg_dump ${dumpArgs}; fi ;;`,
        "  restore)",
        '    if [ "$local" = 1 ]; then',
        // psql variables quote the names; the locale is the only one Synapse accepts.
        '      runuser -u postgres -- psql -p "$port" -X -q -v ON_ERROR_STOP=1 -v db="$db" -v role="$role" -d postgres <<\'SQL\'',
        'DROP DATABASE IF EXISTS :"db" WITH (FORCE);',
        "CREATE DATABASE :\"db\" OWNER :\"role\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';",
        "SQL",
        '      runuser -u postgres -- pg_restore -p "$port" --exit-on-error -d "$db"',
        "    else",
        // Synapse's role owns the (C-locale) database but may not create one: it empties it instead.
        "      psql -X -q -v ON_ERROR_STOP=1 -c 'DROP OWNED BY CURRENT_USER'",
        '      pg_restore --exit-on-error --no-owner -d "$PGDATABASE"',
        "    fi ;;",
        '  *) echo "usage: matrix-synapse-db dump|restore|name" >&2; exit 2 ;;',
        "esac",
        "",
    ].join("\n");
}
