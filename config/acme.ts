// matrix:acme: the certificates' ACME account and server.
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { pem } from "./fields";

export const acmeSchema = z.strictObject({
    email: z
        .email({ error: "expected an e-mail address for the ACME account, such as admin@example.org" })
        .meta({ description: "Contact address of the ACME account (expiry notices)." }),
    directoryUrl: z
        .url({ protocol: /^https$/, error: "expected an https:// ACME directory URL" })
        .default(DEFAULTS.acme.directoryUrl)
        .meta({
            description: "ACME directory; the dev example stack uses Let's Encrypt staging.",
            defaultText: "Let's Encrypt production",
        }),
    caBundle: pem("the CA that signs the ACME server's own TLS certificate")
        .optional()
        .meta({ description: "PEM bundle of a private ACME server's own TLS (also given to the renewal service)." }),
});
