// The Element checks (selfcheck/element.ts): the headers the vhost renders, and a local server.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkElement, elementSecurityHeaders } from "../../selfcheck";
import { behaviour, byId, EL, ELEMENT_HEADERS, HS, net, resetBehaviour, useServers } from "./fixtures";

useServers();

describe("self-check: pure parts", () => {
    it("expects the security headers the Element vhost renders", () => {
        const headers = elementSecurityHeaders();
        for (const name of [
            "X-Frame-Options",
            "X-Content-Type-Options",
            "Content-Security-Policy",
            "Strict-Transport-Security",
        ]) {
            assert.equal(headers[name], ELEMENT_HEADERS[name], name);
        }
        assert.ok(!("Cache-Control" in headers), "Cache-Control has its own check");
    });
});

describe("self-check: Element (a local server)", () => {
    const check = () => checkElement(net, { elementUrl: `https://${EL}`, homeserverUrl: `https://${HS}` });
    it("passes config.json, the security headers and no-cache", async () => {
        const results = await check();
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["element config", "pass"],
                ["element headers", "pass"],
                ["element cache", "pass"],
            ],
        );
    });
    it("fails config.json pointing elsewhere", async () => {
        behaviour.elementBaseUrl = "https://matrix.org";
        const r = byId(await check(), "element config");
        assert.equal(r.status, "fail");
        assert.match(r.detail, /base_url is "https:\/\/matrix\.org"/);
    });
    it("fails a missing security header, warns a different value", async () => {
        delete behaviour.elementHeaders["Content-Security-Policy"];
        const missing = byId(await check(), "element headers");
        assert.equal(missing.status, "fail");
        assert.equal(missing.detail, "missing Content-Security-Policy on /, Content-Security-Policy on /config.json");
        resetBehaviour();
        behaviour.elementHeaders["X-Frame-Options"] = "DENY";
        assert.equal(byId(await check(), "element headers").status, "warn");
    });
    it("fails index.html without no-cache, passes no-store", async () => {
        behaviour.cacheControl = "max-age=3600";
        assert.equal(byId(await check(), "element cache").status, "fail");
        behaviour.cacheControl = undefined;
        assert.match(byId(await check(), "element cache").detail, /Cache-Control absent/);
        behaviour.cacheControl = "no-store";
        assert.equal(byId(await check(), "element cache").status, "pass");
    });
});
