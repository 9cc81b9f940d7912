// What the end-to-end suites share beyond the lab (lab/session.ts, re-exported here): a Matrix
// client through the lab's DNS and CA, and the checks of services the phases repeat.
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { keyValues } from "../../lab/host";
import { ctx, get, HS, rawConfig, sh, type StackSettings } from "../../lab/session";
import { selfCheckFromStack } from "../../scripts/self-check";
import type { RequestInit } from "undici";

export * from "../../lab/session";

/** The SDK logs every request at debug level; keep warnings and errors only. */
const quiet = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: (...m: unknown[]) => console.warn(...m),
    error: (...m: unknown[]) => console.error(...m),
    getChild: () => quiet,
};

/** A matrix-js-sdk client logged in as `user` on `homeserver` (default: the e2e server's host). */
export async function matrixClient(user: string, password: string, homeserver = HS) {
    const sdk = await import("matrix-js-sdk");
    const fetchFn = ((input: string, init?: RequestInit) =>
        get(String(input), init)) as unknown as typeof globalThis.fetch;
    const anon = sdk.createClient({ baseUrl: `https://${homeserver}`, fetchFn, logger: quiet });
    const login = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user },
        password,
    });
    return sdk.createClient({
        baseUrl: `https://${homeserver}`,
        fetchFn,
        logger: quiet,
        accessToken: login.access_token,
        userId: login.user_id,
        deviceId: login.device_id,
    });
}

export type MatrixClient = Awaited<ReturnType<typeof matrixClient>>;

export async function lastMessages(mx: MatrixClient, roomId: string): Promise<string[]> {
    const sdk = await import("matrix-js-sdk");
    const res = await mx.createMessagesRequest(roomId, null, 20, sdk.Direction.Backward);
    return res.chunk.filter((e) => e.type === "m.room.message").map((e) => String(e.content.body));
}

/** The deployed services' main PIDs, nginx's worker PIDs and how often nginx reloaded (a reload keeps its master). */
export function services(): {
    synapse: string;
    nginx: string;
    nginxWorkers: string;
    nginxReloads: number;
    postgres: string;
} {
    const out = sh(
        [
            'echo "synapse=$(systemctl show -p MainPID --value matrix-synapse)"',
            'nginx=$(systemctl show -p MainPID --value nginx); echo "nginx=$nginx"',
            'echo "nginxWorkers=$(pgrep -d, -P "$nginx")"',
            `echo "nginxReloads=$(journalctl -u nginx -o cat --no-pager | grep -c '^Reloaded')"`,
            'echo "postgres=$(systemctl show -p MainPID --value "postgresql@$(pg_lsclusters -h | awk \'$2 == "main" {print $1; exit}\')-main")"',
        ].join("; "),
    ).stdout;
    const v = keyValues(out);
    return {
        synapse: v.synapse!,
        nginx: v.nginx!,
        nginxWorkers: v.nginxWorkers!,
        nginxReloads: Number(v.nginxReloads),
        postgres: v.postgres!,
    };
}

/** The Synapse release that answers federation through nginx. */
export async function servedSynapseVersion(): Promise<string> {
    const fed = (await (await get(`https://${HS}/_matrix/federation/v1/version`)).json()) as {
        server: { version: string };
    };
    return fed.server.version;
}

/** Whether `user` logs in with `password` and still finds `message` in `roomId`. */
export async function seesMessage(user: string, password: string, roomId: string, message: string): Promise<boolean> {
    const mx = await matrixClient(user, password);
    return (await lastMessages(mx, roomId)).includes(message);
}

export type SelfCheckReport = Awaited<ReturnType<typeof selfCheckFromStack>>;

/**
 * `npm run self-check` on the stack as it stands (its config and outputs as the CLI gives them),
 * resolving through the test DNS and trusting pebble's root (and `extraCa`) only.
 */
export async function selfCheck(settings: StackSettings, extraCa = ""): Promise<SelfCheckReport> {
    const outputs = await ctx.stack.outputs(true);
    const ca = path.join(ctx.run, "self-check-ca.pem");
    writeFileSync(ca, ctx.acme.issuingRoot + extraCa);
    const lines: string[] = [];
    const report = await selfCheckFromStack(
        ["--ca", ca, "--no-system-ca", "--resolver", ctx.acme.dnsServer],
        () => ({ config: () => rawConfig(settings), outputs: () => outputs }),
        {},
        (line) => lines.push(line),
    );
    console.log(`self-check:\n${lines.join("\n")}`);
    return report;
}
