// The rendered MatrixRTC files in the real binaries `npm run tools:rtc` built (the release files
// the host suites serve): livekit-server reads livekit.yaml as meant, and lk-jwt-service starts
// from the rendered unit's environment and keys file. In a private network namespace (loopback
// only), so nothing on this machine's ports is touched. Needs root.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "@jest/globals";
import { renderJwtKeys, renderJwtServiceUnit, renderLivekitConfig, RTC_LOOPBACK } from "../../render/rtc";
import { run } from "./tools";

const tools = path.join(process.env.PULUMI_TOOLS ?? path.resolve(__dirname, "../../.tools/pulumi"), "rtc");
const SECRET = "s".repeat(48);

describe("MatrixRTC's rendered files in the real livekit-server and lk-jwt-service", () => {
    let dir: string;
    let livekit: string;
    let jwt: string;
    beforeAll(() => {
        const tarball = path.join(tools, "livekit_1.13.5_linux_amd64.tar.gz");
        jwt = path.join(tools, "lk-jwt-service_linux_amd64");
        assert.ok(existsSync(tarball) && existsSync(jwt), `no release files in ${tools}: run npm run tools:rtc`);
        dir = mkdtempSync(path.join(tmpdir(), "matrix-rtc-"));
        assert.equal(run("tar", ["-xzf", tarball, "-C", dir]).status, 0);
        livekit = path.join(dir, "livekit-server");
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    const config = (extra: Partial<Parameters<typeof renderLivekitConfig>[0]> = {}) =>
        renderLivekitConfig({ nodeIp: "203.0.113.10", udpPort: 7882, tcpPort: 7881, apiSecret: SECRET, ...extra });

    it("livekit-server reads the ports the firewall opens (HTTP on loopback for nginx, ICE over TCP and UDP)", () => {
        writeFileSync(path.join(dir, "livekit.yaml"), config({ udpPort: 7990, tcpPort: 7991 }));
        const r = run(livekit, ["--config", path.join(dir, "livekit.yaml"), "ports"]);
        assert.match(r.stdout, /7880 - HTTP service/);
        assert.match(r.stdout, /7991 - ICE\/TCP/);
        assert.match(r.stdout, /7990\)? - ICE\/UDP/);
    });

    it("livekit-server refuses a config with a key it does not know (what the service step checks for)", () => {
        writeFileSync(path.join(dir, "typo.yaml"), config().replace("udp_port:", "udp_prot:"));
        const r = run(livekit, ["--config", path.join(dir, "typo.yaml"), "ports"]);
        assert.doesNotMatch(r.stdout + r.stderr, /ICE\/TCP/);
        assert.match(r.stdout + r.stderr, /field udp_prot not found/);
    });

    it("both start from the rendered files: LiveKit on loopback with its embedded TURN, lk-jwt-service with the unit's environment", () => {
        writeFileSync(
            path.join(dir, "livekit.yaml"),
            config({ nodeIp: "127.0.0.1", turn: { udpPort: 3479, domain: "matrix.example.org" } }),
        );
        writeFileSync(path.join(dir, "keys"), renderJwtKeys(SECRET));
        const unit = renderJwtServiceUnit({
            binary: jwt,
            sfuUrl: "wss://matrix.example.org/livekit/sfu",
            fullAccessHomeservers: ["example.org", "other.example.org"],
            customCa: false,
        });
        // The unit's Environment= lines as systemd reads them, the keys file where the unit names it.
        const env = [...unit.matchAll(/^Environment="([A-Z_]+)=(.*)"$/gm)]
            .map(([, k, v]) => `${k}=${k === "LIVEKIT_KEY_FILE" ? path.join(dir, "keys") : v}`)
            .join(" ");
        assert.match(env, /LIVEKIT_FULL_ACCESS_HOMESERVERS=example.org,other.example.org/);
        assert.match(unit, new RegExp(`^ExecStart=${jwt}$`, "m"));
        const script = `ip link set lo up
"$1" --config "$2" > "$3/livekit.log" 2>&1 &
env ${env} "$4" > "$3/jwt.log" 2>&1 &
for _ in $(seq 100); do curl -fsS http://127.0.0.1:${RTC_LOOPBACK.livekit}/ >/dev/null 2>&1 && curl -fsS http://127.0.0.1:${RTC_LOOPBACK.jwt}/healthz >/dev/null 2>&1 && break; sleep 0.1; done
echo "livekit: $(curl -sS http://127.0.0.1:${RTC_LOOPBACK.livekit}/)"
echo "jwt: $(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:${RTC_LOOPBACK.jwt}/healthz)"
ss -Hlun | grep -q ':3479 ' && echo "turn: 3479"
echo "listening: $(ss -Hltn | awk '{print $4}' | grep -E ':(${RTC_LOOPBACK.livekit}|${RTC_LOOPBACK.jwt})$' | sort | tr '\n' ' ')"
kill %1 %2; wait`;
        const r = run("unshare", [
            "--net",
            "bash",
            "-c",
            script,
            "rtc",
            livekit,
            path.join(dir, "livekit.yaml"),
            dir,
            jwt,
        ]);
        const logs = readFileSync(path.join(dir, "jwt.log"), "utf8");
        assert.match(
            r.stdout,
            /^livekit: OK$/m,
            r.stdout + r.stderr + readFileSync(path.join(dir, "livekit.log"), "utf8"),
        );
        assert.match(r.stdout, /^jwt: 200$/m, logs);
        assert.match(r.stdout, /^turn: 3479$/m);
        // nginx is their only entrance: both on loopback alone.
        assert.match(r.stdout, /^listening: 127\.0\.0\.1:7880 127\.0\.0\.1:8070 $/m);
        assert.match(logs, /LIVEKIT_URL: wss:\/\/matrix.example.org\/livekit\/sfu, LIVEKIT_JWT_BIND: 127.0.0.1:8070/);
        assert.match(logs, /Using LiveKit API key and API secret from LIVEKIT_KEY_FILE/);
        assert.match(logs, /LIVEKIT_FULL_ACCESS_HOMESERVERS: \[example.org other.example.org\]/);
    });
});
