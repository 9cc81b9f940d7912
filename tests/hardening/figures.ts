// The figures the hardening suites measure, one JSON file each in the folder Jest's figures
// reporter (figuresReporter.js) clears before the run and prints as the closing line after it.
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";

export function recordFigure(name: string, value: Record<string, number>): void {
    const dir = process.env.HARDENING_FIGURES;
    if (!dir)
        throw new Error("HARDENING_FIGURES is unset: run the hardening suites through Jest (npm run test:hardening)");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(value));
}
