// What the stack says: its outputs (`pulumi stack output --json`), what the self-check reads from a
// stack, and whether the deployed outputs still agree with the config.
import { z } from "zod";
import type { StackConfig } from "../config";
import { stripSlash } from "./network";
import { fail, pass, type CheckResult } from "./report";

const stackOutputsSchema = z.object({
    serverName: z.string().min(1),
    homeserverUrl: z.url(),
    elementUrl: z.url(),
    delegation: z.enum(["apex", "external", "none"]),
});

/** The stack outputs the checks read (`pulumi stack output --json`). */
export type StackOutputs = z.infer<typeof stackOutputsSchema>;

/** Validate `pulumi stack output --json`; throws a sentence naming what is missing. */
export function parseStackOutputs(raw: unknown): StackOutputs {
    const r = stackOutputsSchema.safeParse(raw);
    if (r.success) return r.data;
    const keys = [...new Set(r.error.issues.map((i) => String(i.path[0] ?? "outputs")))];
    throw new Error(
        `the stack's outputs lack ${keys.join(", ")}: it has not been deployed (run pulumi up first, or pick the stack with --stack)`,
    );
}

/** What the self-check needs from a stack: its validated config, its outputs, and the SSH key. */
export interface SelfCheckTarget {
    cfg: StackConfig;
    outputs: StackOutputs;
    /** matrix:sshPrivateKey (PEM); used for the checks over SSH only. */
    sshPrivateKey: string;
}

/** The deployed outputs agree with the config: otherwise the config changed since the last `pulumi up`. */
export function checkStackOutputs(cfg: StackConfig, o: StackOutputs): CheckResult {
    const differ: string[] = [];
    if (o.serverName !== cfg.domain) differ.push(`serverName ${o.serverName} (config: ${cfg.domain})`);
    if (stripSlash(o.homeserverUrl) !== `https://${cfg.homeserverHost}`) {
        differ.push(`homeserverUrl ${o.homeserverUrl} (config: https://${cfg.homeserverHost})`);
    }
    if (stripSlash(o.elementUrl) !== `https://${cfg.elementHost}`) {
        differ.push(`elementUrl ${o.elementUrl} (config: https://${cfg.elementHost})`);
    }
    if (o.delegation !== cfg.delegation) differ.push(`delegation ${o.delegation} (config: ${cfg.delegation})`);
    return differ.length > 0
        ? fail("stack", `deployed ${differ.join(", ")}`, "run pulumi up (the config changed since the last deployment)")
        : pass(
              "stack",
              `${o.serverName}: homeserver ${o.homeserverUrl}, Element ${o.elementUrl}, delegation ${o.delegation}`,
          );
}
