// Federation (selfcheck/federation.ts): Matrix canonical JSON, a key response signed here with an
// ed25519 key, and discovery and the keys against a local key server.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { canonicalJson, checkFederation, discoverFederation, verifyServerKeys } from "../../selfcheck";
import { behaviour, DAY, DOMAIN, HS, KEY_ID, keyResponse, net, publicKeyBase64, useServers } from "./fixtures";

useServers();

describe("self-check: pure parts", () => {
    it("writes Matrix canonical JSON (the spec's examples)", () => {
        assert.equal(canonicalJson({}), "{}");
        assert.equal(canonicalJson({ one: 1, two: "Two" }), '{"one":1,"two":"Two"}', "no whitespace, keys in order");
        assert.equal(canonicalJson({ b: "2", a: "1" }), '{"a":"1","b":"2"}');
        assert.equal(
            canonicalJson({ auth: { success: true, mxid: "@john.doe:example.com", profile: { three_pids: [] } } }),
            '{"auth":{"mxid":"@john.doe:example.com","profile":{"three_pids":[]},"success":true}}',
        );
        assert.equal(canonicalJson({ a: "日本語" }), '{"a":"日本語"}', "UTF-8, not \\u escapes");
        assert.equal(canonicalJson({ 本: 2, 日: 1 }), '{"日":1,"本":2}', "sorted by code point");
        assert.equal(canonicalJson({ a: "\u0000" }), '{"a":"\\u0000"}');
        assert.equal(canonicalJson({ a: null }), '{"a":null}');
        // U+FB01 sorts before U+1F600 by code point, after it by UTF-16 unit.
        assert.equal(canonicalJson({ "\u{1F600}": 1, "\uFB01": 2 }), '{"\uFB01":2,"\u{1F600}":1}');
        assert.throws(() => canonicalJson({ a: 1.5 }), /fractions/);
    });

    it("verifies a key response signed elsewhere, and refuses one tampered after signing", () => {
        const now = Date.now();
        const good = verifyServerKeys(keyResponse({ serverName: DOMAIN, validUntil: now + DAY }), DOMAIN, now);
        assert.deepEqual(good.problems, []);
        assert.deepEqual(good.signedBy, [KEY_ID]);
        const tampered = keyResponse({ serverName: DOMAIN, validUntil: now + DAY }, (d) => {
            d.valid_until_ts = now + 2 * DAY;
        });
        assert.deepEqual(verifyServerKeys(tampered, DOMAIN, now).problems, [
            `the signature by ${KEY_ID} does not verify`,
        ]);
        const otherName = verifyServerKeys(
            keyResponse({ serverName: "other.test", validUntil: now + DAY }),
            DOMAIN,
            now,
        );
        assert.ok(
            otherName.problems.some((p) => p.startsWith('server_name is "other.test"')),
            otherName.problems.join(),
        );
        const stale = verifyServerKeys(keyResponse({ serverName: DOMAIN, validUntil: now - 1000 }), DOMAIN, now);
        assert.deepEqual(stale.signedBy, [KEY_ID]);
        assert.ok(
            stale.problems.some((p) => /valid_until_ts .* is past/.test(p)),
            stale.problems.join(),
        );
        const unsigned = keyResponse({ serverName: DOMAIN, validUntil: now + DAY }, (d) => {
            d.signatures = {};
        });
        assert.ok(verifyServerKeys(unsigned, DOMAIN, now).problems.some((p) => p.startsWith("not signed")));
    });
});

describe("self-check: federation (a local key server)", () => {
    it("finds the server through the well-known and verifies its signed keys", async () => {
        const endpoint = await discoverFederation(net, DOMAIN);
        assert.deepEqual(endpoint, { url: `https://${HS}:443`, how: `well-known m.server ${HS}:443` });
        const [keys, version] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(keys!.status, "pass", keys!.detail);
        assert.match(keys!.detail, new RegExp(`signed by ${KEY_ID}, valid 7 days more$`));
        assert.equal(version!.status, "pass");
        assert.equal(version!.detail, "Synapse 1.163.2");
    });
    it("falls back to the server name on 8448 without a well-known (delegation none)", async () => {
        behaviour.wellKnownStatus = 404;
        const endpoint = await discoverFederation(net, DOMAIN);
        assert.equal(endpoint.url, `https://${DOMAIN}:8448`);
        const [keys] = await checkFederation(net, DOMAIN, Date.now(), "none");
        assert.equal(keys!.status, "pass", keys!.detail);
    });
    it("fails a response tampered with after signing", async () => {
        behaviour.keys = keyResponse({ serverName: DOMAIN, validUntil: Date.now() + DAY }, (d) => {
            (d.verify_keys as Record<string, unknown>)["ed25519:b_extra"] = { key: publicKeyBase64 };
        });
        const [keys] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(keys!.status, "fail");
        assert.match(keys!.detail, /the signature by ed25519:a_test does not verify/);
        assert.match(keys!.fix ?? "", /restart Synapse/);
    });
    it("fails keys of another server name, and keys no longer valid", async () => {
        behaviour.keys = keyResponse({ serverName: "other.test", validUntil: Date.now() + DAY });
        const [other] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(other!.status, "fail");
        assert.match(other!.fix ?? "", /another server/);
        behaviour.keys = keyResponse({ serverName: DOMAIN, validUntil: Date.now() - DAY });
        const [stale] = await checkFederation(net, DOMAIN, Date.now(), "apex");
        assert.equal(stale!.status, "fail");
        assert.match(stale!.detail, /is past/);
    });
});
