import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { after, mapInput, type PlainOrOutput } from "../lib/order";
import { remoteStep, type Host } from "../lib/remote";
import {
    POSTGRES_LOOPBACK,
    renderDatabaseDataScript,
    renderDatabaseScript,
    renderDatabaseSql,
    renderPostgresInstallScript,
    type PostgresCluster,
} from "../render/postgres";
import { renderDatabaseNetworkDeleteScript, renderDatabaseNetworkScript } from "../render/databaseHost";

export interface PostgresDatabaseArgs {
    /** The server and how to reach it. */
    host: Host;
    /**
     * The cluster to use (lib/preflight.ts reads it from the host): Debian's `<major>/main` and
     * its real port, which Synapse, the backups and the exporter are given.
     */
    cluster: PlainOrOutput<PostgresCluster>;
    /** Database name. */
    database: string;
    /** Role Synapse logs in as. */
    user: string;
    /** The role's password. Default: generated (`RandomPassword`, 40 letters and digits). */
    password?: pulumi.Input<string>;
    /** On destroy, drop the database and role. */
    purgeOnDestroy: boolean;
    /**
     * PostgreSQL on a host of its own: it listens on `listenAddress` with TLS (a CA made on that
     * host) and admits Synapse's role from `clientAddress` alone. Default: loopback only.
     */
    network?: PlainOrOutput<{ listenAddress: string; clientAddress: string }>;
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
    /** Where Synapse connects: loopback, or the database host's listen address. */
    public readonly address: pulumi.Output<{ host: string; port: number }>;
    /** With `network`: the CA certificate (public) Synapse verifies the server against. */
    public readonly caCertificate?: pulumi.Output<string>;

    constructor(name: string, args: PostgresDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("matrix:index:PostgresDatabase", name, {}, opts);
        const settings = { database: args.database, user: args.user };
        const user = args.host.user;

        const install = remoteStep(
            `${name}-install`,
            args.host,
            { create: mapInput(args.cluster, (c) => renderPostgresInstallScript(c, { user })) },
            { parent: this },
        );
        // The data's own lifetime: deleted (and, with purgeOnDestroy, dropped) only on destroy,
        // after everything that uses it; never by replacing the step below.
        const data = remoteStep(
            `${name}-data`,
            args.host,
            mapInput(args.cluster, (c) =>
                renderDatabaseDataScript({ ...settings, purge: args.purgeOnDestroy }, c, { user }),
            ),
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
                create: mapInput(args.cluster, (c) => renderDatabaseScript(settings, c, { user })),
                stdin: this.password.apply((pw) => renderDatabaseSql(settings, pw)),
            },
            { parent: this, dependsOn: [data] },
        );

        // On a host of its own: reachable by Synapse's address alone, over TLS, once the role exists.
        const network = args.network
            ? remoteStep(
                  `${name}-network`,
                  args.host,
                  {
                      create: mapInput(args.network, (n) =>
                          mapInput(args.cluster, (c) =>
                              renderDatabaseNetworkScript({ ...n, ...settings }, c, { user }),
                          ),
                      ),
                      delete: mapInput(args.cluster, (c) => renderDatabaseNetworkDeleteScript(c, { user })),
                  },
                  { parent: this, dependsOn: [database] },
              )
            : undefined;
        this.caCertificate = network?.stdout;

        const ready = network ? [database, network] : [database];
        this.databaseName = after(ready, settings.database);
        this.userName = after(ready, settings.user);
        this.address = after(
            ready,
            mapInput(args.cluster, (c) =>
                mapInput(args.network ?? { listenAddress: POSTGRES_LOOPBACK, clientAddress: "" }, (n) => ({
                    host: n.listenAddress,
                    port: c.port,
                })),
            ),
        );
        this.registerOutputs({ databaseName: this.databaseName, userName: this.userName, address: this.address });
    }
}
