// matrix:machine (and matrix:database.machine): a host reached over SSH.
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { hostIpv4, hostIpv6, int } from "./fields";

export const machineSchema = z.strictObject({
    ipv4: hostIpv4("203.0.113.10").meta({
        description:
            "The host's IPv4 address: its SSH target unless `sshHost` is set (on `machine`, the public address: the A records' value, and what calls advertise).",
    }),
    ipv6: hostIpv6
        .optional()
        .meta({ description: "The host's IPv6 address (on `machine`: AAAA records, and nginx listens on IPv6 too)." }),
    sshHost: z
        .string()
        .regex(
            /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$|^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$/,
            {
                error: "expected a host name or an address SSH can reach, such as 192.168.1.10 or server.lan",
            },
        )
        .optional()
        .meta({
            description:
                "Where SSH connects when it is not `ipv4`: a private address behind NAT (a home server whose router forwards 80/443), a VPN name. Default: `ipv4`. Changing `ipv4` alone then changes only what points at it (README: DNS).",
        }),
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
