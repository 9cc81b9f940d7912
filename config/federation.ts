// matrix:federation: who federation trusts and reaches (docs/federation.md).
import { z } from "zod";
import { hostname, pem } from "./fields";

export const federationSchema = z.strictObject({
    caBundle: pem("the CA certificates other homeservers' certificates chain to").optional().meta({
        description:
            "PEM bundle of the CAs federation trusts, *instead of* the system's: for a closed federation under a private CA. Synapse's `federation_custom_ca_list`.",
        defaultText: "none (the system's CAs)",
    }),
    allowedServers: z
        .array(hostname("other.example.org"), {
            error: 'expected a list of server names such as ["other.example.org"]',
        })
        .optional()
        .meta({
            description:
                'The only server names federation talks to, such as `["other.example.org"]`. Synapse\'s `federation_domain_whitelist`; with it set, no `matrix.org` key server either.',
            defaultText: "none (any server)",
        }),
    allowedIpRanges: z
        .array(z.union([z.cidrv4(), z.cidrv6()], { error: "expected an address range such as 10.0.0.0/8" }), {
            error: 'expected a list of address ranges such as ["10.0.0.0/8"]',
        })
        .optional()
        .meta({
            description:
                'Private address ranges federation may reach, such as `["10.0.0.0/8"]` (Synapse refuses private addresses otherwise). Synapse\'s `ip_range_whitelist`.',
        }),
});
