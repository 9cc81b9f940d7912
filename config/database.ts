// matrix:postgres (Synapse's database and role) and matrix:database (PostgreSQL on a host of its
// own: docs/scaling.md).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { hostIpv4, sqlIdentifier } from "./fields";
import { machineSchema } from "./machine";

export const postgresSchema = z.strictObject({
    database: sqlIdentifier.default(DEFAULTS.postgres.database).meta({ description: "Synapse's database." }),
    user: sqlIdentifier.default(DEFAULTS.postgres.user).meta({ description: "Synapse's role." }),
});

export const databaseSchema = z.strictObject({
    machine: machineSchema.meta({
        description:
            "The database host, reached over SSH like `machine` (`{ipv4, sshHost, sshPort, sshUser, sshHostKey}`); Synapse connects to its ipv4. Without `database`, PostgreSQL runs on the Synapse host.",
    }),
    synapseAddress: hostIpv4("10.0.0.2").optional().meta({
        description: "Where the database host sees Synapse's connections come from (the only address admitted).",
        defaultText: "`machine.ipv4`",
    }),
});
