// matrix:dns: Cloudflare records for the public names (docs/configuration.md: DNS).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool, int } from "./fields";

const TTL_ERROR = "expected 1 (auto) or a number of seconds from 60 to 86400";

export const dnsSchema = z.strictObject({
    zoneId: z
        .string()
        .regex(/^[0-9a-f]{32}$/, { error: "expected a Cloudflare zone id: 32 lower-case hex digits" })
        .meta({
            description:
                "Cloudflare zone id (32 hex digits) of the zone holding the domain. Without `dns`, no DNS is managed (the stack output `dnsRecordsToCreate` lists the records to create). Needs the secret `cloudflare:apiToken` (or `CLOUDFLARE_API_TOKEN`).",
        }),
    manageApex: bool()
        .default(DEFAULTS.dns.manageApex)
        .meta({ description: "Create the apex record too (delegation `apex` only)." }),
    ttl: int(TTL_ERROR)
        .refine((t) => t === 1 || (t >= 60 && t <= 86400), { error: TTL_ERROR })
        .default(DEFAULTS.dns.ttl)
        .meta({ description: "Record TTL: 1 (Cloudflare's auto), or 60–86400 seconds." }),
});
