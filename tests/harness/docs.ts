// What the docs give a reader to run, as tests read it: the shell of docs/operations.md's wheelhouse
// recipe, between its markers (checked against the program in tests/unit/docs.test.ts, run as
// written in tests/demo/prerequisites.test.ts).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";

export function wheelhouseRecipe(): string {
    const page = readFileSync(path.resolve(__dirname, "../../docs/operations.md"), "utf8");
    const block = page.slice(page.indexOf("<!-- wheelhouse-recipe:start"), page.indexOf("<!-- wheelhouse-recipe:end"));
    const code = block.match(/```sh\n([\s\S]*?)```/);
    assert.ok(code, "docs/operations.md has the recipe between its markers");
    return code[1]!;
}
