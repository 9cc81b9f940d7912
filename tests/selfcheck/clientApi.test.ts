// The client API checks (selfcheck/clientApi.ts) against a local server.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkClientApi } from "../../selfcheck";
import { behaviour, byId, HS, net, uploaded, useServers } from "./fixtures";

useServers();

describe("self-check: client API (a local server)", () => {
    const check = (enableRegistration = false, maxUploadSize = "64K") =>
        checkClientApi(net, { homeserverUrl: `https://${HS}`, enableRegistration, maxUploadSize });
    it("passes versions, closed registration, and an upload of exactly maxUploadSize reaching Synapse", async () => {
        const results = await check();
        assert.deepEqual(
            results.map((r) => [r.id, r.status]),
            [
                ["client versions", "pass"],
                ["client registration", "pass"],
                ["client upload", "pass"],
            ],
        );
        assert.equal(uploaded, 64 * 1024, "the body is exactly maxUploadSize bytes");
        assert.equal(
            byId(results, "client upload").detail,
            "65536 bytes (maxUploadSize 64K) reach Synapse (401 M_MISSING_TOKEN)",
        );
    });
    it("fails registration open when the stack closes it, and closed when it opens it", async () => {
        behaviour.registrationOpen = true;
        const open = byId(await check(false), "client registration");
        assert.equal(open.status, "fail");
        assert.equal(open.detail, "open, but matrix:synapse.enableRegistration says closed");
        assert.equal(byId(await check(true), "client registration").status, "pass");
        behaviour.registrationOpen = false;
        assert.equal(byId(await check(true), "client registration").status, "fail");
    });
    it("fails an upload nginx refuses (413), before the body is sent", async () => {
        behaviour.uploadLimit = 64 * 1024 - 1;
        const r = byId(await check(), "client upload");
        assert.equal(r.status, "fail");
        assert.equal(r.detail, "65536 bytes (maxUploadSize 64K): 413 from nginx");
        assert.match(r.fix ?? "", /client_max_body_size/);
    });
    it("reports nginx's 413 even when nginx closes the connection while the body is still being sent", async () => {
        behaviour.uploadLimit = 1024;
        const r = byId(await check(false, "64M"), "client upload");
        assert.equal(r.detail, "67108864 bytes (maxUploadSize 64M): 413 from nginx");
    });
});
