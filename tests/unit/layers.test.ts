// Imports run one way (README: Layout): render ← lib ← config ← components ← the program
// (index.ts, homeserver.ts) ← the tools (selfcheck/, lab/, scripts/, examples/) ← tests/.
// Nothing outside tests/ imports from tests/.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "@jest/globals";

const ROOT = path.resolve(__dirname, "../..");
const PROGRAM = ["render", "lib", "config", "components"];
/** What each folder (or top-level file) may import, besides itself and packages. */
const MAY_IMPORT: Record<string, string[]> = {
    render: [],
    lib: ["render"],
    config: ["render", "lib"],
    components: ["render", "lib", "config"],
    "index.ts": PROGRAM,
    "homeserver.ts": PROGRAM,
    selfcheck: PROGRAM,
    lab: PROGRAM,
    scripts: [...PROGRAM, "selfcheck", "lab"],
    examples: ["homeserver.ts"],
};

function sources(dir: string): string[] {
    return readdirSync(dir).flatMap((f) => {
        const p = path.join(dir, f);
        if (statSync(p).isDirectory()) return f === "node_modules" ? [] : sources(p);
        return p.endsWith(".ts") ? [p] : [];
    });
}

/** The top-level folder (or file) a path of the repository lives in. */
const layerOf = (file: string) => path.relative(ROOT, file).split(path.sep)[0]!;

/** Every relative import, require and import() of a file, resolved to the layer it reaches. */
function importedLayers(file: string): { specifier: string; layer: string }[] {
    const text = readFileSync(file, "utf8");
    const found: { specifier: string; layer: string }[] = [];
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*|import\s+)"([^"]+)"/g)) {
        const specifier = m[1]!;
        if (specifier.startsWith("."))
            found.push({ specifier, layer: layerOf(path.resolve(path.dirname(file), specifier)) });
        else if (specifier.startsWith("matrix-pulumi/")) found.push({ specifier, layer: `${specifier.slice(14)}.ts` });
    }
    return found;
}

describe("layers", () => {
    it("every import runs the allowed way", () => {
        const wrong: string[] = [];
        for (const [layer, allowed] of Object.entries(MAY_IMPORT)) {
            const files = layer.endsWith(".ts") ? [path.join(ROOT, layer)] : sources(path.join(ROOT, layer));
            assert.ok(files.length > 0, layer);
            for (const file of files) {
                for (const i of importedLayers(file)) {
                    if (i.layer !== layer && !allowed.includes(i.layer)) {
                        wrong.push(`${path.relative(ROOT, file)} imports ${i.specifier} (${i.layer})`);
                    }
                }
            }
        }
        assert.deepEqual(wrong, []);
    });

    it("finds the imports it judges (a program file's, a tool's, a test's)", () => {
        const layers = (f: string) => new Set(importedLayers(path.join(ROOT, f)).map((i) => i.layer));
        assert.ok(layers("components/matrixHomeserver.ts").has("config"));
        assert.ok(layers("scripts/demo.ts").has("lab"));
        assert.ok(layers("examples/hetzner/index.ts").has("homeserver.ts"));
        assert.ok(layers("tests/unit/homeserverComponent.test.ts").has("tests"));
    });
});
