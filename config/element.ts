// matrix:element: Element Web, a pinned release.
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool } from "./fields";

export const elementSchema = z.strictObject({
    version: z
        .string({ error: 'expected an Element Web release as a string, such as "1.12.29"' })
        .regex(/^[0-9]+\.[0-9]+\.[0-9]+(-rc\.[0-9]+)?$/, {
            error: 'expected an Element Web release such as "1.12.29" (no leading "v")',
        })
        .meta({ description: "Element Web release, such as `1.12.29`." }),
    sha256: z
        .string({ error: "expected the SHA-256 of the tarball as a string (quote it in YAML)" })
        .regex(/^[0-9a-f]{64}$/, {
            error: "expected the SHA-256 of the release tarball: 64 lower-case hex digits",
        })
        .meta({ description: "SHA-256 of the tarball, checked before extraction." }),
    url: z
        .url({ protocol: /^https?$/, error: "expected an http(s):// URL of the release tarball" })
        .optional()
        .meta({
            description: "Where to download the tarball (a mirror, say).",
            defaultText: "the GitHub release of the version",
        }),
    brand: z.string().min(1).default(DEFAULTS.element.brand).meta({ description: "Brand shown in Element." }),
    disableCustomUrls: bool()
        .default(DEFAULTS.element.disableCustomUrls)
        .meta({ description: 'Hide "other homeserver" at login.' }),
});
