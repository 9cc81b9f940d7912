// matrix:secrets: secrets a stack brings instead of generating them (moving an existing server,
// say), and the SMTP password. Set with `pulumi config set --secret --path matrix:secrets.<name>`.
import { z } from "zod";

export const PROVIDED_SECRETS = [
    "registrationSharedSecret",
    "macaroonSecretKey",
    "formSecret",
    "databasePassword",
] as const;
export type ProvidedSecret = (typeof PROVIDED_SECRETS)[number];

export const secretsSchema = z.strictObject({
    ...(Object.fromEntries(
        PROVIDED_SECRETS.map((k) => [
            k,
            z
                .string({ error: "expected a non-empty string" })
                .min(1, { error: "expected a non-empty string; remove the key to have it generated" })
                .optional()
                .meta({
                    description: `**Secret.** Replaces the generated ${k} (docs/configuration.md: Bringing your own secrets).`,
                    defaultText: "generated",
                }),
        ]),
    ) as Record<ProvidedSecret, z.ZodOptional<z.ZodString>>),
    smtpPassword: z
        .string({ error: "expected a non-empty string" })
        .min(1)
        .optional()
        .meta({ description: "**Secret.** The password of `monitoring.email.username` (required with it)." }),
});
