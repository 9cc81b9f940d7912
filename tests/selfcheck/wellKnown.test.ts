// The well-known checks (selfcheck/wellKnown.ts) against a local server.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkWellKnown } from "../../selfcheck";
import { behaviour, DOMAIN, HS, net, useServers } from "./fixtures";

useServers();

describe("self-check: well-known (a local server)", () => {
    const check = (delegation: "apex" | "external" | "none" = "apex") =>
        checkWellKnown(net, {
            serverName: DOMAIN,
            homeserverHost: delegation === "none" ? DOMAIN : HS,
            homeserverUrl: `https://${HS}`,
            delegation,
        });
    it("passes both documents served as the program serves them", async () => {
        const [server, client] = await check();
        assert.equal(server!.status, "pass", server!.detail);
        assert.equal(server!.detail, `https://${DOMAIN}/.well-known/matrix/server: {"m.server":"${HS}:443"}`);
        assert.equal(client!.status, "pass", client!.detail);
    });
    it("fails two Content-Type headers, even equal ones", async () => {
        behaviour.contentTypes = ["application/json", "application/json"];
        const [server] = await check();
        assert.equal(server!.status, "fail");
        assert.match(server!.detail, /2 Content-Type headers/);
    });
    it("fails another Content-Type", async () => {
        behaviour.contentTypes = ["text/plain"];
        assert.match((await check())[1]!.detail, /Content-Type text\/plain, not application\/json/);
    });
    it("fails a missing Access-Control-Allow-Origin", async () => {
        behaviour.cors = [];
        const [server, client] = await check();
        assert.equal(server!.status, "fail");
        assert.match(client!.detail, /no Access-Control-Allow-Origin/);
    });
    it("fails an m.server elsewhere and a base_url other than homeserverUrl", async () => {
        behaviour.mServer = HS;
        behaviour.baseUrl = "https://old.example.test";
        const [server, client] = await check();
        assert.match(server!.detail, /m\.server is "matrix\.example\.test", not "matrix\.example\.test:443"/);
        assert.equal(client!.status, "fail");
        assert.match(client!.detail, /base_url is "https:\/\/old\.example\.test"/);
        assert.match(client!.fix ?? "", /pulumi up/);
    });
    it("with delegation external, reports problems as warnings with the stack output to publish", async () => {
        behaviour.wellKnownStatus = 404;
        const [server, client] = await check("external");
        assert.equal(server!.status, "warn");
        assert.match(server!.detail, /HTTP 404/);
        assert.match(server!.fix ?? "", /wellKnown\.server/);
        assert.equal(client!.status, "warn");
    });
});
