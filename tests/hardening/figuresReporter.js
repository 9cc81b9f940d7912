// After a run that included the hardening suites, one line of figures, after Jest's summary:
//   bad-configs N/N rejected, secrets 0 leaked, faults K/K converged, testssl 0 high
// The suites write each figure as a JSON file (figures.ts); a figure a suite did not reach is "?".
// Plain CommonJS: Jest loads reporters without transforming them.
const { mkdirSync, readdirSync, readFileSync, rmSync } = require("node:fs");
const path = require("node:path");

class FiguresReporter {
    constructor(globalConfig) {
        this.dir = path.join(globalConfig.rootDir, ".cache/hardening-figures");
        // The suites (in this process or in workers started after this) write here.
        process.env.HARDENING_FIGURES = this.dir;
    }

    onRunStart() {
        rmSync(this.dir, { recursive: true, force: true });
        mkdirSync(this.dir, { recursive: true });
    }

    onRunComplete(_contexts, results) {
        if (
            !results.testResults.some((r) => r.testFilePath.includes(`${path.sep}tests${path.sep}hardening${path.sep}`))
        ) {
            return;
        }
        const f = Object.fromEntries(
            readdirSync(this.dir)
                .filter((n) => n.endsWith(".json"))
                .map((n) => [n.slice(0, -5), JSON.parse(readFileSync(path.join(this.dir, n), "utf8"))]),
        );
        const n = (v) => (v === undefined ? "?" : String(v));
        process.stdout.write(
            `\nbad-configs ${n(f.badConfigs?.rejected)}/${n(f.badConfigs?.total)} rejected, ` +
                `secrets ${n(f.secrets?.leaked)} leaked, ` +
                `faults ${n(f.faults?.converged)}/${n(f.faults?.total)} converged, ` +
                `testssl ${n(f.testssl?.high)} high\n`,
        );
    }
}

module.exports = FiguresReporter;
