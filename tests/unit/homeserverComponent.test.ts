// MatrixHomeserver used from another program (examples/hetzner: a VM of its own and the homeserver
// on it), run under Pulumi's mocks: the VM's address is an Output the component is handed.
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, it } from "@jest/globals";
import { HOST_FACTS } from "../harness/program";
import { byName, plainStrings, runProgramSoon, TEST_SSH_KEY, type ProgramResult } from "../harness/run";
import { unwrapSecrets } from "../harness/stack";

/** What Pulumi sends for a value a preview cannot know. */
const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
const EXAMPLE = path.resolve(__dirname, "../../examples/hetzner/index.ts");
const VM_IPV4 = "198.51.100.7";
const config = (overrides: Record<string, string> = {}) => ({
    "matrix:domain": "chat.example.org",
    "matrix:acmeEmail": "admin@example.org",
    "matrix:elementSha256": "a".repeat(64),
    "matrix:sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample admin",
    "matrix:sshPrivateKey": TEST_SSH_KEY,
    ...overrides,
});
// (The harness names the project "matrix": these are the example's own keys.)
// The VM's address, as the (mocked) Hetzner provider reports it once the server exists.
const vmState = { "hcloud:index/server:Server": { ipv4Address: VM_IPV4, ipv6Address: "2001:db8:7::1" } };
// The new VM as the preflight finds it: Debian 12, its PostgreSQL cluster on 5433 (so the port
// the scripts get can only have come from this host's facts).
const vmFacts = { [VM_IPV4]: HOST_FACTS.replace("15 main 5432 online", "15 main 5433 online") };

const run = runProgramSoon(config(), {
    program: EXAMPLE,
    secretKeys: ["matrix:sshPrivateKey"],
    hostFacts: vmFacts,
    stateByType: vmState,
});
const preview = runProgramSoon(config(), {
    program: EXAMPLE,
    secretKeys: ["matrix:sshPrivateKey"],
    hostFacts: vmFacts,
    preview: true,
});
const loopback = runProgramSoon(config(), {
    program: EXAMPLE,
    secretKeys: ["matrix:sshPrivateKey"],
    stateByType: { "hcloud:index/server:Server": { ipv4Address: "127.0.0.1" } },
});

const children = (r: ProgramResult) => r.resources.filter((x) => x.type !== "pulumi:pulumi:Stack");

describe("MatrixHomeserver from another program (examples/hetzner)", () => {
    it("names its children after itself, under the component, beside the program's own VM", async () => {
        const r = await run;
        assert.equal(r.error, undefined, r.error);
        const homeserver = byName(r, "chat");
        assert.equal(homeserver.type, "matrix:index:MatrixHomeserver");
        for (const role of ["packages", "postgres", "synapse", "nginx", "element", "backup", "users", "firewall"]) {
            assert.equal(byName(r, `chat-${role}`).parent, homeserver.urn, role);
        }
        assert.ok(byName(r, "matrix").type.startsWith("hcloud:"));
        assert.ok(!children(r).some((x) => x.name === "synapse"), "no child with a bare role name");
    });

    it("reaches the VM at the address its provider gave, and reads the host there first", async () => {
        const r = await run;
        const hosts = new Set(
            r.resources
                .filter((x) => x.type === "command:remote:Command")
                .map((x) => (unwrapSecrets(x.inputs.connection) as { host: string }).host),
        );
        assert.deepEqual([...hosts], [VM_IPV4]);
        // The cluster's port comes from the preflight of that address (5433 there).
        const install = String(unwrapSecrets(byName(r, "chat-postgres-install").inputs.create));
        assert.match(install, /5433/);
        assert.deepEqual(
            (r.outputs.dnsRecordsToCreate?.value as string[]).filter((x) => x.includes(" A ")),
            [
                "matrix.chat.example.org A 198.51.100.7",
                "element.chat.example.org A 198.51.100.7",
                "chat.example.org A 198.51.100.7",
            ],
        );
        // The key stays secret: nowhere in plain inputs.
        assert.ok(!plainStrings(r.resources.map((x) => x.inputs)).some((s) => s.includes("TESTKEYMATERIAL")));
    });

    it("in a preview before the VM exists, registers every step without inventing an address", async () => {
        const r = await preview;
        assert.equal(r.error, undefined, r.error);
        assert.deepEqual(
            children(r)
                .map((x) => x.name)
                .sort(),
            children(await run)
                .map((x) => x.name)
                .sort(),
        );
        // The first step waits for the preflight, which waits for the address: unknown here.
        assert.equal(byName(r, "chat-packages-install").inputs.create, UNKNOWN);
        assert.match(String(byName(await run, "chat-packages-install").inputs.create), /apt-get/);
    });

    it("refuses an address no host can have, once it is known, before any step runs", async () => {
        const r = await loopback;
        assert.match(r.error ?? "", /machine\.ipv4: 127\.0\.0\.1 is loopback/);
        const ran = r.resources.filter((x) => x.type === "command:remote:Command" && x.outputs.stdout !== undefined);
        assert.deepEqual(
            ran.map((x) => x.name),
            [],
        );
    });
});
