import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { after } from "../lib/order";
import { remoteStep, type Host } from "../lib/remote";
import {
    POSTGRES_ADDRESS,
    renderDatabaseDataScript,
    renderDatabaseScript,
    renderDatabaseSql,
    renderPostgresInstallScript,
} from "../render/postgres";

export interface PostgresDatabaseArgs {
    /** The server and how to reach it. */
    host: Host;
    /** Database name. Default: "synapse". */
    database?: string;
    /** Role Synapse logs in as. Default: "synapse". */
    user?: string;
    /** The role's password. Default: generated (`RandomPassword`, 40 letters and digits). */
    password?: pulumi.Input<string>;
    /** On destroy, drop the database and role. Default: false (they are kept). */
    purgeOnDestroy?: boolean;
}

/**
 * PostgreSQL on the host, a login role with a generated password, and a database in the only
 * locale Synapse accepts (UTF8, C collation and ctype). An existing database in another locale
 * stops the deployment with a message instead of being touched.
 */
export class PostgresDatabase extends pulumi.ComponentResource {
    /** Database name, resolved once the database exists. */
    public readonly databaseName: pulumi.Output<string>;
    public readonly userName: pulumi.Output<string>;
    /** The role's password (secret). */
    public readonly password: pulumi.Output<string>;
    /** Where Synapse connects: PostgreSQL listens on loopback only. */
    public readonly address: pulumi.Output<{ host: string; port: number }>;

    constructor(name: string, args: PostgresDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:PostgresDatabase", name, {}, opts);
        const settings = { database: args.database ?? "synapse", user: args.user ?? "synapse" };
        const user = args.host.user;

        const install = remoteStep(
            `${name}-install`,
            args.host,
            { create: renderPostgresInstallScript({ user }) },
            { parent: this },
        );
        // The data's own lifetime: deleted (and, with purgeOnDestroy, dropped) only on destroy,
        // after everything that uses it; never by replacing the step below.
        const data = remoteStep(
            `${name}-data`,
            args.host,
            renderDatabaseDataScript({ ...settings, purge: args.purgeOnDestroy ?? false }, { user }),
            { parent: this, dependsOn: [install] },
        );
        this.password = pulumi.secret(
            args.password ??
                // Letters and digits only: the password lands in YAML and libpq settings.
                new random.RandomPassword(`${name}-password`, { length: 40, special: false }, { parent: this }).result,
        );
        const database = remoteStep(
            `${name}-database`,
            args.host,
            {
                create: renderDatabaseScript(settings, { user }),
                stdin: this.password.apply((pw) => renderDatabaseSql(settings, pw)),
            },
            { parent: this, dependsOn: [data] },
        );

        this.databaseName = after(database, settings.database);
        this.userName = after(database, settings.user);
        this.address = after(database, POSTGRES_ADDRESS);
        this.registerOutputs({ databaseName: this.databaseName, userName: this.userName, address: this.address });
    }
}
