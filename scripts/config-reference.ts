// npm run docs:config: writes the configuration reference (generated from config/'s schema) into
// docs/configuration.md, between its markers.
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { withConfigReference } from "../config/reference";

const page = path.resolve(__dirname, "../docs/configuration.md");
const before = readFileSync(page, "utf8");
const after = withConfigReference(before);
if (after === before) {
    console.log("docs/configuration.md: the reference is up to date");
} else {
    writeFileSync(page, after);
    console.log("docs/configuration.md: reference rewritten from config/");
}
