// Helpers for tests that run real tools on rendered output.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";

/** The bash script inside a rendered `bash -c '…'` command, as the remote shell would see it. */
export function scriptBody(command: string): string {
    const m = /^(sudo -n )?bash -c /.exec(command);
    if (!m) throw new Error(`not a rendered script: ${command.slice(0, 40)}`);
    const res = spawnSync("bash", ["-c", `printf '%s' ${command.slice(m[0].length)}`], { encoding: "utf8" });
    if (res.status !== 0) throw new Error(res.stderr);
    return res.stdout;
}

export function run(cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
    return spawnSync(cmd, args, { input, encoding: "utf8", env: { ...process.env, ...env } });
}

export function has(tool: string): boolean {
    return spawnSync("bash", ["-c", `command -v ${tool}`]).status === 0;
}
