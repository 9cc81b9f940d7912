// 1. DNS: each public name resolves to the machine.
import { describeError, resolveType, type Network } from "./network";
import { fail, pass, type CheckResult } from "./report";

/** One public name resolves to the machine: A = ipv4; AAAA = ipv6 when set, none otherwise. */
export async function checkDns(
    net: Network,
    name: string,
    machine: { ipv4: string; ipv6?: string },
    fix: string,
): Promise<CheckResult> {
    const id = `dns ${name}`;
    let a: string[];
    let aaaa: string[];
    try {
        [a, aaaa] = await Promise.all([resolveType(net, name, "A"), resolveType(net, name, "AAAA")]);
    } catch (err) {
        return fail(
            id,
            `the resolver${net.resolver ? ` ${net.resolver}` : ""} did not answer: ${describeError(err)}`,
            "check this machine's DNS (or the --resolver address), then run again",
        );
    }
    const v6 = (address: string) => new URL(`http://[${address}]/`).hostname;
    const problems: string[] = [];
    if (a.length !== 1 || a[0] !== machine.ipv4) {
        problems.push(
            a.length === 0 ? `no A record (expected ${machine.ipv4})` : `A ${a.join(", ")}, not ${machine.ipv4}`,
        );
    }
    if (machine.ipv6) {
        const want = v6(machine.ipv6);
        if (aaaa.length !== 1 || v6(aaaa[0]!) !== want) {
            problems.push(
                aaaa.length === 0 ? `no AAAA record (expected ${want})` : `AAAA ${aaaa.join(", ")}, not ${want}`,
            );
        }
    } else if (aaaa.length > 0) {
        problems.push(`AAAA ${aaaa.join(", ")}, but matrix:machine has no ipv6 (nginx listens on IPv4 only)`);
    }
    if (problems.length > 0) return fail(id, problems.join("; "), fix);
    return pass(id, [`A ${a.join(", ")}`, ...(aaaa.length ? [`AAAA ${aaaa.join(", ")}`] : [])].join(", "));
}
