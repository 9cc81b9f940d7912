// Runs index.ts inside a Pulumi Stack (as the language host does) once mocks are set, and
// collects its exports with their secretness. Shared by the unit and e2e harnesses.
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { SECRET_SIG, SECRET_SIG_KEY } from "../../lab/pulumi";

export const PROGRAM = path.resolve(__dirname, "../../index.ts");

export interface StackOutput {
    value: unknown;
    secret: boolean;
}

export async function runStack(program = PROGRAM): Promise<Record<string, StackOutput>> {
    // The module's own exports (runInPulumiStack hands back unwrapped values).
    // Not named `exports`: under CommonJS that would shadow this module's own exports.
    let programExports: Record<string, unknown> = {};
    await pulumi.runtime.runInPulumiStack(() => {
        programExports = require(program) as Record<string, unknown>;
        return Promise.resolve(programExports);
    });
    const outputs: Record<string, StackOutput> = {};
    await Promise.all(
        Object.entries(programExports).map(async ([key, value]) => {
            const out = pulumi.output(value) as unknown as { promise(): Promise<unknown>; isSecret: Promise<boolean> };
            const [v, secret] = await Promise.all([out.promise(), out.isSecret]);
            outputs[key] = { value: v, secret: secret === true };
        }),
    );
    await pulumi.runtime.disconnect();
    return outputs;
}

export { SECRET_SIG, SECRET_SIG_KEY };

/** Secret values arrive in mock inputs wrapped as {sig: secretSig, value}. */
export function unwrapSecrets(v: unknown): unknown {
    if (Array.isArray(v)) return v.map(unwrapSecrets);
    if (v && typeof v === "object") {
        const o = v as Record<string, unknown>;
        if (o[SECRET_SIG_KEY] === SECRET_SIG) return unwrapSecrets(o.value);
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, unwrapSecrets(x)]));
    }
    return v;
}

/** A value the mock returns as secret state. */
export function secretValue(value: unknown): Record<string, unknown> {
    return { [SECRET_SIG_KEY]: SECRET_SIG, value };
}
