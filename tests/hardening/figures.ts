// The figures the hardening suites measure, one JSON file each in a folder the runner reads
// (tests/hardening/run.ts prints them as the closing line).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";

export const FIGURES_DIR = process.env.HARDENING_FIGURES ?? path.resolve(__dirname, "../../.cache/hardening-figures");

export function recordFigure(name: string, value: Record<string, number>): void {
    mkdirSync(FIGURES_DIR, { recursive: true });
    writeFileSync(path.join(FIGURES_DIR, `${name}.json`), JSON.stringify(value));
}

export function readFigures(): Record<string, Record<string, number>> {
    mkdirSync(FIGURES_DIR, { recursive: true });
    return Object.fromEntries(
        readdirSync(FIGURES_DIR)
            .filter((f) => f.endsWith(".json"))
            .map((f) => [
                f.slice(0, -5),
                JSON.parse(readFileSync(path.join(FIGURES_DIR, f), "utf8")) as Record<string, number>,
            ]),
    );
}
