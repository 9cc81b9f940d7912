// npm run test:hardening: runs the hardening suites, then ends with one line of figures:
//   bad-configs N/N rejected, secrets 0 leaked, faults K/K converged, testssl 0 high
// A figure a suite did not reach is shown as "?"; the exit code is the suites'.
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import * as path from "node:path";
import { FIGURES_DIR, readFigures } from "./figures";

rmSync(FIGURES_DIR, { recursive: true, force: true });
const suites = ["badConfigs.test.ts", "host.test.ts"].map((f) => path.join(__dirname, f));
const res = spawnSync(
    process.execPath,
    ["--import", "tsx", "--test", "--test-reporter=spec", "--test-concurrency=1", "--test-timeout=2700000", ...suites],
    { stdio: "inherit", env: { ...process.env, HARDENING_FIGURES: FIGURES_DIR } },
);
const f = readFigures();
const n = (v: number | undefined) => (v === undefined ? "?" : String(v));
console.log(
    `bad-configs ${n(f.badConfigs?.rejected)}/${n(f.badConfigs?.total)} rejected, ` +
        `secrets ${n(f.secrets?.leaked)} leaked, ` +
        `faults ${n(f.faults?.converged)}/${n(f.faults?.total)} converged, ` +
        `testssl ${n(f.testssl?.high)} high`,
);
process.exit(res.status ?? 1);
