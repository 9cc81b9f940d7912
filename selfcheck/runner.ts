// All of it: every check started at once, in report order, one group's bug never hiding the others.
import { preflightSettings, publicHostnames, type StackConfig } from "../config";
import { sshExec, type SshConnection } from "../lib/ssh";
import { checkAuth } from "./auth";
import { checkCalls } from "./calls";
import { checkClientApi } from "./clientApi";
import { checkDns } from "./dns";
import { checkElement } from "./element";
import { checkFederation } from "./federation";
import { checkHost, hostProbe } from "./host";
import { describeError, makeNetwork, type SelfCheckOptions } from "./network";
import { fail, type CheckResult } from "./report";
import { checkStackOutputs, type SelfCheckTarget } from "./stack";
import { checkLegacyTls, checkTls } from "./tls";
import { checkWellKnown } from "./wellKnown";

/** A group's unexpected exception as a failed line, so one bug does not hide the other checks. */
async function guarded(id: string, run: () => Promise<CheckResult[]>): Promise<CheckResult[]> {
    try {
        return await run();
    } catch (err) {
        return [fail(id, `the check itself failed: ${describeError(err)}`, "report this as a bug of matrix-pulumi")];
    }
}

/**
 * Every check, started at once, as groups in the order they are reported (await them in turn to
 * print as they complete). Nothing is printed.
 */
export function startSelfCheck(target: SelfCheckTarget, o: SelfCheckOptions = {}): Promise<CheckResult[]>[] {
    const { cfg, outputs } = target;
    const net = makeNetwork(o);
    const now = o.now ?? Date.now;
    const exec = o.exec ?? ((c: SshConnection, command: string) => sshExec(c, command));
    const names = publicHostnames(cfg);
    const hosts = Object.values(names.certificates);
    const managed = new Set(Object.values(names.dnsRecords));
    const dnsFix = (name: string) =>
        managed.has(name)
            ? "run pulumi up (matrix:dns manages this record); check the Cloudflare zone for a conflicting record"
            : `at your DNS provider: ${name} A ${cfg.machine.ipv4}${cfg.machine.ipv6 ? ` and AAAA ${cfg.machine.ipv6}` : ""} (stack output dnsRecordsToCreate)`;
    const connection = (m: StackConfig["machine"]): SshConnection => ({
        host: m.ipv4,
        port: m.sshPort,
        user: m.sshUser,
        privateKey: target.sshPrivateKey,
        hostKey: m.sshHostKey,
    });
    const timeoutSeconds = net.timeoutMs / 1000;
    const hostOpts = { exec, timeoutMs: net.timeoutMs };
    return [
        Promise.resolve([checkStackOutputs(cfg, outputs)]),
        guarded("dns", () => Promise.all(hosts.map((h) => checkDns(net, h, cfg.machine, dnsFix(h))))),
        ...hosts.map((h) => guarded(`tls ${h}`, () => Promise.all([checkTls(net, h, now()), checkLegacyTls(net, h)]))),
        guarded("well-known", () =>
            checkWellKnown(net, {
                serverName: outputs.serverName,
                homeserverHost: cfg.homeserverHost,
                homeserverUrl: outputs.homeserverUrl,
                delegation: cfg.delegation,
            }),
        ),
        guarded("federation", () => checkFederation(net, outputs.serverName, now(), cfg.delegation)),
        guarded("client", () =>
            checkClientApi(net, {
                homeserverUrl: outputs.homeserverUrl,
                enableRegistration: cfg.synapse.enableRegistration,
                // With MAS, registration is MAS's (the auth checks read it).
                auth: cfg.auth?.enabled === true,
                maxUploadSize: cfg.synapse.maxUploadSize,
            }),
        ),
        guarded("element", () =>
            checkElement(net, { elementUrl: outputs.elementUrl, homeserverUrl: outputs.homeserverUrl }),
        ),
        ...(cfg.rtc || cfg.turn ? [guarded("calls", () => checkCalls(net, cfg, now()))] : []),
        ...(cfg.auth?.enabled ? [guarded("auth", () => checkAuth(net, cfg))] : []),
        guarded("ssh", () =>
            checkHost(connection(cfg.machine), hostProbe(cfg, "homeserver", timeoutSeconds), {
                ...hostOpts,
                preflight: preflightSettings(cfg, "homeserver"),
            }),
        ),
        ...(cfg.database
            ? [
                  guarded("ssh database", () =>
                      checkHost(connection(cfg.database!.machine), hostProbe(cfg, "database", timeoutSeconds), {
                          ...hostOpts,
                          label: " (database host)",
                          preflight: preflightSettings(cfg, "database"),
                      }),
                  ),
              ]
            : []),
    ];
}

/** Every check's results, in report order. */
export async function runSelfCheck(target: SelfCheckTarget, o: SelfCheckOptions = {}): Promise<CheckResult[]> {
    return (await Promise.all(startSelfCheck(target, o))).flat();
}
