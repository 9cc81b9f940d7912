// The self-check's pure helpers (selfcheck/units.ts): upload sizes and OnCalendar periods.
import assert from "node:assert/strict";
import { describe, it } from "@jest/globals";
import { schedulePeriodSeconds, uploadSizeBytes } from "../../selfcheck";

describe("self-check: pure parts", () => {
    it("reads upload sizes as Synapse and nginx do (K and M binary)", () => {
        assert.equal(uploadSizeBytes("50M"), 50 * 1024 * 1024);
        assert.equal(uploadSizeBytes("512K"), 512 * 1024);
        assert.equal(uploadSizeBytes("1000"), 1000);
        assert.throws(() => uploadSizeBytes("1G"), /not an upload size/);
    });

    it("reads the period of the common OnCalendar forms, daily otherwise", () => {
        assert.equal(schedulePeriodSeconds("daily"), 86_400);
        assert.equal(schedulePeriodSeconds("hourly"), 3_600);
        assert.equal(schedulePeriodSeconds("weekly"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* 03:30"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* 00,12:00:00"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-* *:15:00"), 3_600);
        assert.equal(schedulePeriodSeconds("Sun *-*-* 04:00"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("Mon..Fri *-*-* 04:00"), 86_400);
        assert.equal(schedulePeriodSeconds("*-*-01 02:00"), 31 * 86_400);
        assert.equal(schedulePeriodSeconds("something odd"), 86_400);
        assert.equal(schedulePeriodSeconds("nightly 03:00"), 86_400, "not a weekday: daily, not weekly");
        assert.equal(schedulePeriodSeconds("Sat,Sun 05:00"), 86_400);
        assert.equal(schedulePeriodSeconds("Fri 05:00"), 7 * 86_400);
        assert.equal(schedulePeriodSeconds("*-12-24 18:00"), 366 * 86_400);
    });
});
