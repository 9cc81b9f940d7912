// The self-check's report (selfcheck/report.ts): one line per result.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { formatResult } from "../../selfcheck";

describe("self-check: pure parts", () => {
    it("formats a line per result, the fix only where something is wrong", () => {
        assert.equal(formatResult({ id: "tls a.test", status: "pass", detail: "ok", fix: "x" }), "PASS tls a.test: ok");
        assert.equal(
            formatResult({ id: "tls a.test", status: "fail", detail: "expired", fix: "renew" }),
            "FAIL tls a.test: expired — fix: renew",
        );
    });
});
