// matrix:support: /.well-known/matrix/support (docs/federation.md: Support contacts).
import { z } from "zod";
import { DEFAULTS } from "./defaults";

/** A contact (at least a Matrix ID or an e-mail address). */
const supportContactSchema = z
    .strictObject({
        matrixId: z
            .string()
            .regex(/^@[a-z0-9._=\/+-]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, {
                error: "expected a Matrix user ID such as @admin:example.org",
            })
            .optional(),
        email: z.email({ error: "expected an e-mail address such as admin@example.org" }).optional(),
        role: z.enum(["admin", "security"], { error: 'expected "admin" or "security"' }).default(DEFAULTS.support.role),
    })
    .refine((c) => c.matrixId !== undefined || c.email !== undefined, {
        error: "each contact needs a matrixId or an email (or both)",
    });

export const supportSchema = z
    .strictObject({
        contacts: z
            .array(supportContactSchema, {
                error: 'expected a list such as [{"matrixId": "@admin:example.org", "role": "admin"}]',
            })
            .default([])
            .meta({
                description:
                    'Contacts: `[{"matrixId": "@admin:example.org", "email": "admin@example.org", "role": "admin"}]` (`role`: `admin` or `security`; each needs a Matrix ID or an e-mail). Without `support`, no support document is served.',
            }),
        page: z
            .url({ protocol: /^https?$/, error: "expected the support page's https:// URL" })
            .optional()
            .meta({ description: "The support page's URL (`support_page`)." }),
    })
    .refine((s) => s.contacts.length > 0 || s.page !== undefined, {
        error: "needs contacts, a page, or both (leave matrix:support out to serve no support document)",
    });
