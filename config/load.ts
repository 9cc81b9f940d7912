// The loaders: this stack's config read from Pulumi's runtime. The rest of config/ is pure.
import * as pulumi from "@pulumi/pulumi";
import { parseStackConfig } from "./parse";
import type { StackConfig } from "./schema";
import type { ProvidedSecret } from "./secrets";

/** Read and validate this stack's config; throws before any resource exists. */
export function loadStackConfig(): StackConfig {
    const raw = pulumi.runtime.allConfig();
    const cloudflareToken = Boolean(raw["cloudflare:apiToken"] || process.env.CLOUDFLARE_API_TOKEN);
    // Not in the SDK's typings, but exported by its runtime.
    const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
    return parseStackConfig(raw, { cloudflareToken, isSecret: runtime.isConfigSecret });
}

/** A secret the stack brings (`matrix:secrets.<name>`), as a secret Output. */
export function loadProvidedSecret(name: ProvidedSecret): pulumi.Output<string> {
    return new pulumi.Config("matrix")
        .requireSecretObject<Partial<Record<ProvidedSecret, string>>>("secrets")
        .apply((s) => s[name] ?? "");
}

/** The SMTP password Alertmanager logs in with (matrix:secrets.smtpPassword), as a secret Output. */
export function loadSmtpPassword(): pulumi.Output<string> {
    return new pulumi.Config("matrix")
        .requireSecretObject<{ smtpPassword?: string }>("secrets")
        .apply((s) => s.smtpPassword ?? "");
}

/** The SSH private key, as a secret Output (never part of StackConfig). */
export function loadSshPrivateKey(): pulumi.Output<string> {
    return new pulumi.Config("matrix").requireSecret("sshPrivateKey");
}
