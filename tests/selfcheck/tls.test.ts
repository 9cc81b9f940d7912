// The TLS checks (selfcheck/tls.ts) against local servers with openssl's certificates: valid,
// expiring, expired, wrong name, chain left out, TLS 1.1 allowed.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkLegacyTls, checkTls } from "../../selfcheck";
import { HS, net, network, useServers } from "./fixtures";

useServers();

describe("self-check: TLS (local servers with openssl's certificates)", () => {
    it("passes a valid certificate with its chain, naming the days left and the protocol", async () => {
        const r = await checkTls(net, HS, Date.now());
        assert.equal(r.status, "pass", r.detail);
        assert.match(
            r.detail,
            /^valid (89|90) days \(until \d{4}-\d\d-\d\d\), TLSv1\.3, issuer Self-check Test Intermediate$/,
        );
    });
    it("warns under 21 days left and fails under 7", async () => {
        const soon = await checkTls(net, "soon.example.test", Date.now());
        assert.equal(soon.status, "warn", soon.detail);
        assert.match(soon.detail, /^valid 1[45] days/);
        const expiring = await checkTls(net, "expiring.example.test", Date.now());
        assert.equal(expiring.status, "fail", expiring.detail);
        assert.match(expiring.detail, /^valid [23] days/);
        assert.match(expiring.fix ?? "", /certbot renew/);
    });
    it("fails an expired certificate, naming the reason", async () => {
        const r = await checkTls(net, "expired.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.equal(r.detail, "the certificate expired on 2020-02-01 (CERT_HAS_EXPIRED)");
        assert.match(r.fix ?? "", /certbot renew/);
    });
    it("fails a certificate for another name", async () => {
        const r = await checkTls(net, "wrong.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /ERR_TLS_CERT_ALTNAME_INVALID/);
    });
    it("fails a server that does not send its intermediate", async () => {
        const r = await checkTls(net, "chainless.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
        assert.match(r.fix ?? "", /fullchain\.pem/);
    });
    it("fails a certificate from a CA not trusted (the system store alone)", async () => {
        const r = await checkTls(network({ ca: undefined, systemCa: true }), HS, Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.fix ?? "", /--ca/);
    });
    it("fails a host nothing answers on, with nginx as the fix", async () => {
        const r = await checkTls(net, "closed.example.test", Date.now());
        assert.equal(r.status, "fail");
        assert.match(r.detail, /^no TLS handshake: .*ECONNREFUSED/);
        assert.match(r.fix ?? "", /nothing listens on closed\.example\.test:443/);
        assert.equal((await checkTls(net, HS, Date.now(), 8448)).id, `tls ${HS}:8448`);
    });
    it("passes a server that refuses TLS 1.0–1.1, fails one that accepts them", async () => {
        const refused = await checkLegacyTls(net, HS);
        assert.equal(refused.status, "pass", refused.detail);
        const accepted = await checkLegacyTls(net, "legacy.example.test");
        assert.equal(accepted.status, "fail");
        assert.match(accepted.detail, /^accepts TLSv1(\.1)?$/);
        assert.match(accepted.fix ?? "", /ssl_protocols TLSv1\.2 TLSv1\.3/);
    });
});
