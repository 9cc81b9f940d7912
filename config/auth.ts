// matrix:auth: Matrix Authentication Service (MAS) in front of Synapse's logins (README: Auth (MAS)).
import { z } from "zod";
import { DEFAULTS } from "./defaults";
import { bool, releaseSchema } from "./fields";

export const authSchema = z.strictObject({
    enabled: bool().default(DEFAULTS.auth.enabled).meta({
        description:
            "`true`: MAS signs users in (OAuth 2.0 / OIDC); Synapse's own password login and registration move to it, for good. `false` after it ran is refused unless `allowDisable` is set.",
    }),
    mas: releaseSchema("Matrix Authentication Service", "1.22.0", "`mas-cli-x86_64-linux.tar.gz`").meta({
        description: "MAS's release tarball (required with `auth`).",
    }),
    registrationTokenRequired: bool().default(DEFAULTS.auth.registrationTokenRequired).meta({
        description:
            "With `synapse.enableRegistration`: a new account needs a registration token (`mas-cli manage issue-user-registration-token`).",
    }),
    allowDisable: bool().default(DEFAULTS.auth.allowDisable).meta({
        description:
            "Let `enabled: false` (or removing `auth`) take MAS away after it ran: every account's password and session stay in MAS's database, and nobody can sign in to Synapse until you restore them.",
    }),
});
