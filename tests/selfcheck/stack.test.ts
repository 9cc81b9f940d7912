// What the stack says (selfcheck/stack.ts): deployed outputs that differ from the config.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { checkStackOutputs } from "../../selfcheck";
import { config, DOMAIN, EL, HS } from "./fixtures";

describe("self-check: pure parts", () => {
    it("fails outputs that differ from the config (changed since the last deployment)", () => {
        const cfg = config();
        const deployed = { serverName: DOMAIN, homeserverUrl: `https://${HS}`, elementUrl: `https://${EL}/` };
        assert.equal(checkStackOutputs(cfg, { ...deployed, delegation: "apex" }).status, "pass");
        const moved = checkStackOutputs(cfg, {
            ...deployed,
            elementUrl: "https://chat.example.test",
            delegation: "none",
        });
        assert.equal(moved.status, "fail");
        assert.equal(
            moved.detail,
            `deployed elementUrl https://chat.example.test (config: https://${EL}), delegation none (config: apex)`,
        );
        assert.match(moved.fix ?? "", /pulumi up/);
    });
});
