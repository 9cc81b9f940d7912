// The README and docs/ name commands, config keys, stack outputs and each other: each must exist,
// so a renamed script, key or heading fails here instead of in a reader's terminal.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "@jest/globals";
import { DEFAULT_SYNAPSE_VERSION } from "../../config/defaults";
import { REFERENCE_END, REFERENCE_START } from "../../config/reference";
import { synapseRequirements } from "../../render/synapse";
import { wheelhouseRecipe } from "../harness/docs";

const ROOT = path.resolve(__dirname, "../..");
const read = (f: string) => readFileSync(path.join(ROOT, f), "utf8");
const PAGES = [
    "README.md",
    ...readdirSync(path.join(ROOT, "docs")).map((f) => `docs/${f}`),
    ...readdirSync(path.join(ROOT, "examples"), { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".md"))
        .map((f) => `examples/${f}`),
].filter((f) => f.endsWith(".md"));
const STACK_FILES = readdirSync(path.join(ROOT, "examples/stacks")).map((f) => `examples/stacks/${f}`);

/** Each page's text, with where a match sits (file:line) for the messages. */
function mentions(files: string[], re: RegExp): { where: string; value: string }[] {
    return files.flatMap((f) =>
        read(f)
            .split("\n")
            .flatMap((line, i) => [...line.matchAll(re)].map((m) => ({ where: `${f}:${i + 1}`, value: m[1]! }))),
    );
}

/** GitHub's anchor for a heading. */
const slug = (h: string) =>
    h
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, "")
        .replace(/ /g, "-");

function anchors(file: string): Set<string> {
    const seen = new Map<string, number>();
    const out = new Set<string>();
    let fenced = false;
    for (const line of read(file).split("\n")) {
        if (line.startsWith("```")) fenced = !fenced;
        const m = !fenced && line.match(/^#{1,6} (.*)$/);
        if (!m) continue;
        const base = slug(m[1]!);
        const n = seen.get(base) ?? 0;
        seen.set(base, n + 1);
        out.add(n === 0 ? base : `${base}-${n}`);
    }
    return out;
}

describe("the docs name what exists", () => {
    it("every `npm run` script", () => {
        const scripts = Object.keys((JSON.parse(read("package.json")) as { scripts: object }).scripts);
        const missing = mentions([...PAGES, ...STACK_FILES], /npm run (?:-s )?([a-z][\w:-]*[\w-])/g).filter(
            (m) => !scripts.includes(m.value),
        );
        assert.deepEqual(missing, []);
    });

    it("every relative link and its anchor", () => {
        const broken = PAGES.flatMap((f) =>
            mentions([f], /\]\(([^)\s]+)\)/g)
                .filter((m) => !/^[a-z]+:/.test(m.value))
                .filter((m) => {
                    const [target = "", anchor] = m.value.split("#");
                    const file = target === "" ? f : path.join(path.dirname(f), target);
                    if (!existsSync(path.join(ROOT, file))) return true;
                    return anchor !== undefined && file.endsWith(".md") && !anchors(file).has(anchor);
                }),
        );
        assert.deepEqual(broken, []);
    });

    it("every matrix: config key (the generated reference's keys, their sections, and inside maps)", () => {
        const page = read("docs/configuration.md");
        const table = page.slice(page.indexOf(REFERENCE_START), page.indexOf(REFERENCE_END));
        const keys = [...table.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);
        assert.ok(keys.includes("synapse.wheelhouse"), "the reference table is read");
        const known = (k: string) =>
            keys.some((key) => key === k || key.startsWith(`${k}.`) || k.startsWith(`${key}.`));
        const unknown = mentions(
            [...PAGES, ...STACK_FILES],
            /(?<![\w/])matrix:([a-zA-Z][\w]*(?:\.[a-zA-Z*][\w]*)*)(?![\w:])/g,
        ).filter((m) => !known(m.value) && !known(m.value.replace(/\.\*.*$/, "")));
        assert.deepEqual(unknown, []);
    });

    it("every stack output", () => {
        const outputs = [...read("index.ts").matchAll(/^export const (\w+)/gm)].map((m) => m[1]!);
        const missing = mentions(PAGES, /pulumi stack output (?:--\S+ )*(\w+)/g).filter(
            (m) => !outputs.includes(m.value),
        );
        assert.deepEqual(missing, []);
    });

    it("the license package.json names, in LICENSE", () => {
        assert.equal((JSON.parse(read("package.json")) as { license: string }).license, "Apache-2.0");
        assert.match(read("LICENSE"), /^\s*Apache License\s+Version 2\.0, January 2004\s/);
        assert.match(read("LICENSE"), /END OF TERMS AND CONDITIONS\s*$/);
    });

    it("the wheelhouse recipe builds what the host installs, at the release the program tests", () => {
        const recipe = wheelhouseRecipe();
        const wanted = synapseRequirements(DEFAULT_SYNAPSE_VERSION).replace(/'/g, '"');
        assert.match(recipe, new RegExp(`pip wheel -w wheelhouse ${wanted.replace(/[[\]().*+?]/g, "\\$&")}\n`));
    });
});
