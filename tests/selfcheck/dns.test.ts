// The DNS check (selfcheck/dns.ts) against a local DNS server.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkDns } from "../../selfcheck";
import { DOMAIN, HS, MACHINE, net, useServers } from "./fixtures";

useServers();

describe("self-check: DNS (a local DNS server)", () => {
    it("passes names that resolve to the machine, IPv6 compared as addresses", async () => {
        const r = await checkDns(net, HS, { ...MACHINE, ipv6: "2001:DB8:0:0::0010" }, "fix");
        assert.equal(r.status, "pass", r.detail);
        assert.equal(r.detail, `A ${MACHINE.ipv4}, AAAA 2001:db8::10`);
    });
    it("fails a missing AAAA when the machine has IPv6, a stray AAAA when it has none", async () => {
        const missing = await checkDns(net, "v4only.example.test", MACHINE, "create it");
        assert.equal(missing.status, "fail");
        assert.match(missing.detail, /no AAAA record/);
        assert.equal(missing.fix, "create it");
        const stray = await checkDns(net, DOMAIN, { ipv4: MACHINE.ipv4 }, "fix");
        assert.equal(stray.status, "fail");
        assert.match(stray.detail, /but matrix:machine has no ipv6/);
        assert.equal((await checkDns(net, "v4only.example.test", { ipv4: MACHINE.ipv4 }, "fix")).status, "pass");
    });
    it("fails a wrong or extra A record, and a name that does not exist", async () => {
        assert.match(
            (await checkDns(net, HS, { ...MACHINE, ipv4: "203.0.113.99" }, "f")).detail,
            /A 203.0.113.10, not 203.0.113.99/,
        );
        const extra = await checkDns(net, "stray.example.test", MACHINE, "f");
        assert.equal(extra.status, "fail");
        assert.match(extra.detail, /198\.51\.100\.7/);
        assert.match((await checkDns(net, "nowhere.example.test", MACHINE, "f")).detail, /no A record/);
    });
});
