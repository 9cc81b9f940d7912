// matrix:machine (and matrix:database.machine): a host reached over SSH.
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { hostIpv4, hostIpv6, int } from "./fields";

export const machineSchema = z.strictObject({
    ipv4: hostIpv4("203.0.113.10").meta({
        description: "The host's IPv4 address, its SSH target (on `machine`, the A records' value too).",
    }),
    ipv6: hostIpv6
        .optional()
        .meta({ description: "The host's IPv6 address (on `machine`: AAAA records, and nginx listens on IPv6 too)." }),
    sshPort: int("expected a port number from 1 to 65535")
        .refine((p) => p >= 1 && p <= 65535, { error: "expected a port number from 1 to 65535" })
        .default(DEFAULTS.machine.sshPort)
        .meta({ description: "SSH port." }),
    sshUser: z
        .string()
        .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: "expected a Unix user name such as root" })
        .default(DEFAULTS.machine.sshUser)
        .meta({ description: "SSH user; another user than root needs password-less sudo." }),
    sshHostKey: z
        .string()
        .regex(/^(ssh-[a-z0-9-]+|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}( .*)?$/, {
            error: 'expected an OpenSSH public key line such as "ssh-ed25519 AAAAC3Nza..."',
        })
        .optional()
        .meta({
            description: "The host's public key (`ssh-ed25519 AAAA…`): SSH refuses any other host. Recommended.",
        }),
});
