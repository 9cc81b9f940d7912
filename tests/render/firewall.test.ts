// The firewall rules in the real nftables, in a network namespace of their own: loaded twice
// (reloads replace the table atomically), and then tested with real connections from a peer.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, it } from "@jest/globals";
import { renderFirewallRules } from "../../render/firewall";
import { run } from "./tools";

const dir = mkdtempSync(path.join(tmpdir(), "firewall-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The start of a script with two network namespaces joined by a veth: "$ns-srv" (10.99.<net>.1,
 * the rules in `rules` loaded) and "$ns-cli" (10.99.<net>.2), removed when the script ends.
 */
function peers(net: number, rules: string): string {
    return `
set -euo pipefail
ns=mpfw${net}x$$
ip netns add "$ns-srv"; ip netns add "$ns-cli"
trap 'ip netns pids "$ns-srv" | xargs -r kill; ip netns del "$ns-srv"; ip netns del "$ns-cli"' EXIT
ip link add "v${net}x$$a" netns "$ns-srv" type veth peer name "v${net}x$$b" netns "$ns-cli"
ip -n "$ns-srv" addr add 10.99.${net}.1/30 dev "v${net}x$$a"; ip -n "$ns-srv" link set "v${net}x$$a" up; ip -n "$ns-srv" link set lo up
ip -n "$ns-cli" addr add 10.99.${net}.2/30 dev "v${net}x$$b"; ip -n "$ns-cli" link set "v${net}x$$b" up
ip netns exec "$ns-srv" nft -f ${rules}
`;
}

describe("firewall rules (real nftables, private network namespace)", () => {
    const file = path.join(dir, "firewall.nft");
    writeFileSync(file, renderFirewallRules({ tcpPorts: [443, 22, 80, 22] }));

    it("pass nft's check", () => {
        const r = run("unshare", ["-n", "nft", "-c", "-f", file]);
        assert.equal(r.status, 0, r.stderr);
    });

    it("load on a minimal host without /etc/protocols (no netbase package)", () => {
        const r = run("unshare", ["-m", "-n", "bash", "-c", `mount --bind /dev/null /etc/protocols && nft -f ${file}`]);
        assert.equal(r.status, 0, r.stderr);
    });

    it("load twice into one table, replaced and not duplicated", () => {
        const r = run("unshare", ["-n", "bash", "-c", `nft -f ${file} && nft -f ${file} && nft list ruleset`]);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.match(/table inet matrix_pulumi/g)?.length, 1);
        assert.equal(r.stdout.match(/tcp dport \{ 22, 80, 443 \} accept/g)?.length, 1);
    });

    it("let a peer reach an allowed port and drop a connection to any other", () => {
        // "srv" has the rules and listens on 443 and 8009.
        const script = `${peers(0, file)}
ip netns exec "$ns-srv" python3 -m http.server 443 --bind 10.99.0.1 >/dev/null 2>&1 &
ip netns exec "$ns-srv" python3 -m http.server 8009 --bind 10.99.0.1 >/dev/null 2>&1 &
# Both listening (a busy machine starts Python in more than a second).
for _ in $(seq 200); do [ "$(ip netns exec "$ns-srv" ss -ltnH 'sport = :443 or sport = :8009' | wc -l)" = 2 ] && break; sleep 0.1; done
a=$(ip netns exec "$ns-cli" curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://10.99.0.1:443/ || true)
b=$(ip netns exec "$ns-cli" curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://10.99.0.1:8009/ || true)
c=$(ip netns exec "$ns-srv" curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://10.99.0.1:8009/ || true)
echo "443=$a 8009=$b local8009=$c"
`;
        const r = run("bash", ["-c", script]);
        assert.equal(r.status, 0, r.stderr);
        // 8009 times out from the peer (dropped, 000), but answers from the host itself.
        assert.equal(r.stdout.trim(), "443=200 8009=000 local8009=200");
    });

    it("let a peer's UDP in on the calls' ports and range only (matrix:rtc, matrix:turn)", () => {
        const udp = path.join(dir, "firewall-udp.nft");
        writeFileSync(udp, renderFirewallRules({ tcpPorts: [22, 80, 443], udpPorts: [7882, [49152, 49251]] }));
        const script = `${peers(1, udp)}
ip netns exec "$ns-srv" python3 -c '
import select, socket, sys, time
socks = []
for p in (7882, 49152, 49251, 49252, 7881, 3478):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.99.1.1", p)); socks.append(s)
got, end = set(), time.time() + 5
while time.time() < end:
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r: s.recv(64); got.add(s.getsockname()[1])
print("received", *sorted(got))
' > ${dir}/udp.out &
# All six bound before anything is sent (the script then listens 5 s).
for _ in $(seq 200); do [ "$(ip netns exec "$ns-srv" ss -lunH | wc -l)" = 6 ] && break; sleep 0.1; done
for p in 7882 49152 49251 49252 7881 3478; do ip netns exec "$ns-cli" bash -c "echo x > /dev/udp/10.99.1.1/$p"; done
wait %1
cat ${dir}/udp.out
`;
        const r = run("bash", ["-c", script]);
        assert.equal(r.status, 0, r.stderr);
        // The range's edges in, the port past it and the ports not listed dropped.
        assert.equal(r.stdout.trim(), "received 7882 49152 49251");
    });
});
