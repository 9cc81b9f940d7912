// The stack's keys, section by section: each section's schema lives in its own file; this joins
// them and names the validated type.
import { z } from "zod";
import { acmeSchema } from "./acme";
import { authSchema } from "./auth";
import { backupSchema } from "./backup";
import { rtcSchema, turnSchema } from "./calls";
import { databaseSchema, postgresSchema } from "./database";
import { DEFAULTS } from "./defaults";
import { dnsSchema } from "./dns";
import { elementSchema } from "./element";
import { federationSchema } from "./federation";
import { bool, hostname } from "./fields";
import { firewallSchema } from "./firewall";
import { machineSchema } from "./machine";
import { monitoringSchema } from "./monitoring";
import { secretsSchema, type ProvidedSecret } from "./secrets";
import { supportSchema } from "./support";
import { synapseSchema } from "./synapse";
import { usersSchema, type User } from "./users";

const delegationSchema = z.enum(["apex", "external", "none"], {
    error: 'expected one of "apex", "external", "none"',
});

/**
 * Whether a private key needs a passphrase: PEM's encrypted forms, or an OpenSSH key whose
 * cipher (the first field after "openssh-key-v1\0") is not "none".
 */
function passphraseProtected(key: string): boolean {
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key)) return true;
    const body = key.match(/-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/);
    if (!body) return false;
    const bytes = Buffer.from(body[1]!.replace(/\s+/g, ""), "base64");
    const magic = "openssh-key-v1\0";
    if (bytes.length < magic.length + 4 || bytes.toString("latin1", 0, magic.length) !== magic) return false;
    const length = bytes.readUInt32BE(magic.length);
    return bytes.toString("latin1", magic.length + 4, magic.length + 4 + length) !== "none";
}

export const stackSchema = z.strictObject({
    domain: hostname("example.org").meta({
        description: "Matrix server name (`@user:<domain>`). Immutable once users exist.",
    }),
    homeserverHost: hostname("matrix.example.org").optional().meta({
        description: "Host name clients and servers reach Synapse at.",
        defaultText: "`matrix.<domain>` (`<domain>` with delegation `none`)",
    }),
    elementHost: hostname("element.example.org").optional().meta({
        description: "Element's host name; must differ from `homeserverHost` and `domain`.",
        defaultText: "`element.<domain>`",
    }),
    machine: machineSchema,
    sshPrivateKey: z
        .string()
        .refine((k) => /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(k), {
            error: "expected an OpenSSH/PEM private key (set it with: pulumi config set --secret matrix:sshPrivateKey < ~/.ssh/id_ed25519)",
        })
        .refine((k) => !passphraseProtected(k), {
            error: "the key is protected by a passphrase, which no step can type: use a key without one (ssh-keygen -t ed25519 -N '' -f ~/.ssh/matrix-deploy, its .pub in the server's authorized_keys), or remove the passphrase from a copy (ssh-keygen -p -N '' -f <copy>)",
        })
        .meta({
            description: "**Secret.** The SSH key: `pulumi config set --secret matrix:sshPrivateKey < key`.",
        }),
    dns: dnsSchema.optional(),
    delegation: delegationSchema.default(DEFAULTS.delegation).meta({
        description:
            "`apex`: this nginx serves `https://<domain>/.well-known/matrix/*`. `external`: another web server does; publish the stack output `wellKnown`. `none`: no delegation, federation on `<domain>:8448` (`homeserverHost` must equal `domain`).",
    }),
    acme: acmeSchema,
    synapse: synapseSchema.prefault({}),
    element: elementSchema,
    postgres: postgresSchema.prefault({}),
    database: databaseSchema.optional(),
    secrets: secretsSchema.optional(),
    purgeOnDestroy: bool().default(DEFAULTS.purgeOnDestroy).meta({
        description:
            "`pulumi destroy` also deletes the database, Synapse's data and config, and Element (docs/operations.md: Destroy).",
    }),
    backup: backupSchema.prefault({}),
    firewall: firewallSchema.prefault({}),
    federation: federationSchema.prefault({}),
    monitoring: monitoringSchema.prefault({}),
    support: supportSchema.optional(),
    rtc: rtcSchema.optional(),
    turn: turnSchema.optional(),
    auth: authSchema.optional(),
    users: usersSchema,
});

export type Delegation = z.infer<typeof delegationSchema>;

/** The validated stack configuration, defaults filled in. Contains no secrets. */
export interface StackConfig {
    domain: string;
    homeserverHost: string;
    elementHost: string;
    machine: z.infer<typeof machineSchema>;
    dns?: z.infer<typeof dnsSchema>;
    delegation: Delegation;
    acme: z.infer<typeof acmeSchema>;
    synapse: z.infer<typeof synapseSchema>;
    element: z.infer<typeof elementSchema> & { url: string };
    postgres: z.infer<typeof postgresSchema>;
    /** PostgreSQL on another host (docs/scaling.md); none: on this one. */
    database?: z.infer<typeof databaseSchema>;
    /** Scheduled backups (docs/operations.md: Backups). */
    backup: z.infer<typeof backupSchema>;
    /** The host firewall (docs/operations.md: Firewall). */
    firewall: z.infer<typeof firewallSchema>;
    /** Who federation trusts and reaches (docs/federation.md). */
    federation: z.infer<typeof federationSchema>;
    /** Prometheus, exporters and Alertmanager (docs/monitoring.md). */
    monitoring: z.infer<typeof monitoringSchema>;
    /** /.well-known/matrix/support (docs/federation.md); none: not served. */
    support?: z.infer<typeof supportSchema>;
    /** MatrixRTC with LiveKit (docs/calls.md); none: off. */
    rtc?: z.infer<typeof rtcSchema> & { livekit: { url: string }; jwtService: { url: string } };
    /** coturn for legacy 1:1 calls (docs/calls.md); none: off. */
    turn?: z.infer<typeof turnSchema>;
    /** Matrix Authentication Service (README: Auth (MAS)), on when `enabled`; none: Synapse signs users in itself. */
    auth?: z.infer<typeof authSchema> & { mas: { url: string } };
    /** Accounts the program creates once each (docs/operations.md: Users). */
    users: User[];
    /** `pulumi destroy` also deletes the database, media store, signing key and config. */
    purgeOnDestroy: boolean;
    /** Which secrets the stack brings (their values are read as secret Outputs, never kept here). */
    providedSecrets: Record<ProvidedSecret, boolean>;
}

/** The machine a stack deploys to, as validated. */
export type MachineConfig = StackConfig["machine"];
