// The database script and SQL against a real PostgreSQL (Debian's, started by .ci/run),
// run through bash exactly as the host runs them.
import assert from "node:assert/strict";
import { afterAll, describe, it } from "@jest/globals";
import { renderDatabaseScript, renderDatabaseSql, type PostgresCluster } from "../../render/postgres";
import { run } from "./tools";

/** This machine's cluster (Debian's <major>/main, started by .ci/run), as the preflight reads it on a host. */
const [version, name, port] = run("pg_lsclusters", ["-h"]).stdout.trim().split("\n")[0]!.split(/\s+/);
const cluster: PostgresCluster = { version: version!, name: name!, port: Number(port) };

const suffix = `${process.pid}`;
const settings = { database: `mp_synapse_${suffix}`, user: `mp_synapse_${suffix}` };
const wrongLocale = { database: `mp_wrong_${suffix}`, user: `mp_wrong_${suffix}` };

function psql(sql: string): string {
    const res = run("runuser", ["-u", "postgres", "--", "psql", "-X", "-qAt", "-d", "postgres", "-c", sql]);
    assert.equal(res.status, 0, res.stderr);
    return res.stdout.trim();
}

function apply(s: typeof settings, password: string) {
    return run("bash", ["-c", renderDatabaseScript(s, cluster)], renderDatabaseSql(s, password));
}

function login(s: typeof settings, password: string) {
    return run(
        "psql",
        ["-X", "-qAt", "-h", "127.0.0.1", "-U", s.user, "-d", s.database, "-c", "SELECT current_user"],
        undefined,
        {
            PGPASSWORD: password,
        },
    );
}

describe("PostgresDatabase SQL on a real PostgreSQL", () => {
    afterAll(() => {
        for (const s of [settings, wrongLocale]) {
            psql(`DROP DATABASE IF EXISTS ${s.database}`);
            psql(`DROP ROLE IF EXISTS ${s.user}`);
        }
    });

    it("creates the role and a UTF8 database with C collation and ctype, twice without harm", () => {
        for (let i = 0; i < 2; i++) {
            const res = apply(settings, "firstPassword123");
            assert.equal(res.status, 0, res.stderr);
        }
        assert.equal(
            psql(
                `SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = '${settings.database}'`,
            ),
            "UTF8|C|C",
        );
        assert.equal(
            psql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${settings.database}'`),
            settings.user,
        );
    });

    it("lets the role log in over 127.0.0.1 with its password, and rotates it", () => {
        const first = login(settings, "firstPassword123");
        assert.equal(first.status, 0, first.stderr);
        assert.equal(first.stdout.trim(), settings.user);
        assert.equal(apply(settings, "rotatedPassword456").status, 0);
        assert.notEqual(login(settings, "firstPassword123").status, 0);
        assert.equal(login(settings, "rotatedPassword456").status, 0);
    });

    it("never prints the password, and sends only its SCRAM verifier", () => {
        const res = apply(settings, "rotatedPassword456");
        assert.ok(!`${res.stdout}${res.stderr}`.includes("rotatedPassword456"));
        const sql = renderDatabaseSql(settings, "rotatedPassword456");
        assert.ok(!sql.includes("rotatedPassword456"));
        assert.equal(sql, renderDatabaseSql(settings, "rotatedPassword456"), "same inputs, same SQL");
        assert.match(
            psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${settings.user}'`),
            /^SCRAM-SHA-256\$4096:/,
        );
    });

    it("refuses an existing database in another locale, naming the fix, and leaves it alone", () => {
        psql(
            `CREATE DATABASE ${wrongLocale.database} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'`,
        );
        const res = apply(wrongLocale, "whateverPassword");
        assert.notEqual(res.status, 0);
        assert.match(res.stderr, /Synapse needs UTF8 with C and C/);
        assert.match(res.stderr, /C\.UTF-8/);
        assert.equal(
            psql(`SELECT count(*) FROM pg_roles WHERE rolname = '${wrongLocale.user}'`),
            "0",
            "nothing was created",
        );
        assert.equal(psql(`SELECT datcollate FROM pg_database WHERE datname = '${wrongLocale.database}'`), "C.UTF-8");
    });
});
