// npm run register-user -- <name> [--admin] [--stack <stack>] [--password-stdin]
//
// Registers one account on a deployed stack's homeserver through an SSH tunnel to Synapse's
// admin API on 127.0.0.1:8008 (nginx does not expose it); with matrix:auth, through MAS's admin
// API on the host. The stack's config and its
// registrationSharedSecret output come from the Pulumi CLI; the password is generated unless
// given on stdin, and printed once.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseStackConfig, USER_NAME } from "../config";
import { registerUser, registerUserInMas } from "../lib/registerUser";

/** What the script needs from a stack: its raw config (secrets decrypted) and the shared secret. */
export interface StackReader {
    config(): Record<string, string>;
    registrationSharedSecret(): string;
}

/** The Pulumi CLI as the reader: `pulumi config --json --show-secrets` and `pulumi stack output`. */
export function pulumiCli(stack?: string): StackReader {
    const sel = stack ? ["--stack", stack] : [];
    const pulumi = (...args: string[]) => execFileSync("pulumi", [...args, ...sel], { encoding: "utf8" });
    return {
        config: () =>
            Object.fromEntries(
                Object.entries(
                    JSON.parse(pulumi("config", "--json", "--show-secrets")) as Record<string, { value?: string }>,
                ).map(([k, v]) => [k, String(v.value ?? "")]),
            ),
        registrationSharedSecret: () => pulumi("stack", "output", "registrationSharedSecret", "--show-secrets").trim(),
    };
}

export async function registerFromStack(
    argv: string[],
    reader: (stack?: string) => StackReader,
    stdin: () => string = () => readFileSync(0, "utf8"),
): Promise<{ userId: string; password?: string }> {
    const { values, positionals } = parseArgs({
        args: argv,
        allowPositionals: true,
        options: { admin: { type: "boolean" }, stack: { type: "string" }, "password-stdin": { type: "boolean" } },
    });
    const name = positionals[0];
    if (positionals.length !== 1 || !name || !USER_NAME.test(name)) {
        throw new Error(
            "usage: npm run register-user -- <name> [--admin] [--stack <stack>] [--password-stdin] (name: a-z 0-9 . _ -)",
        );
    }
    const stack = reader(values.stack);
    const raw = stack.config();
    // DNS is not touched here, so a missing Cloudflare token is no reason to refuse.
    const cfg = parseStackConfig(raw, { cloudflareToken: true });
    const given = values["password-stdin"] ? stdin().trim() : undefined;
    const password = given || randomBytes(18).toString("base64url");
    const target = { ...cfg.machine, privateKey: raw["matrix:sshPrivateKey"] ?? "" };
    const registration = { name, password, admin: values.admin ?? false };
    // With matrix:auth, MAS holds the accounts (README: Auth (MAS)).
    const userId = cfg.auth?.enabled
        ? await registerUserInMas(target, cfg.domain, registration)
        : await registerUser(target, stack.registrationSharedSecret(), registration);
    return { userId, password: given ? undefined : password };
}

if (require.main === module) {
    registerFromStack(process.argv.slice(2), pulumiCli).then(
        ({ userId, password }) => {
            console.log(`registered ${userId}`);
            if (password) console.log(`password: ${password}`);
        },
        (err: unknown) => {
            console.error(err instanceof Error ? err.message : String(err));
            process.exit(1);
        },
    );
}
