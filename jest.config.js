// Jest runs every suite (docs/testing.md), one project per kind of test:
//   unit, render   `npm test`: milliseconds to seconds, no host needed (render needs root)
//   e2e, hardening, federation, scale, demo `npm run test:e2e` (…): real hosts, each suite with its own
// TypeScript is compiled by @swc/jest, without type-checking (that is `npm run build`'s job, once
// for the whole tree); so are the ESM-only packages the Matrix client brings.
const swc = [
    "@swc/jest",
    { jsc: { parser: { syntax: "typescript" }, target: "es2022" }, module: { type: "commonjs" } },
];
// matrix-js-sdk is ESM-only, and so are some packages it imports: compiled to CommonJS like the
// tests, wherever they sit in node_modules.
const esm = ["matrix-js-sdk", "p-retry", "is-network-error", "bs58", "base-x", "@matrix-org/matrix-sdk-crypto-wasm"];
const project = (name, extra = {}) => ({
    displayName: name,
    testEnvironment: "node",
    testMatch: [`<rootDir>/tests/${name}/**/*.test.ts`],
    transform: { "^.+\\.(ts|js|mjs)$": swc },
    transformIgnorePatterns: [`^(?!.*/node_modules/(${esm.join("|")})/).*/node_modules/`],
    ...extra,
});
// Suites on a real host print their progress as they go, and allow an hour per hook and test.
const onHost = { setupFilesAfterEnv: ["<rootDir>/tests/e2e/setup.ts"] };

/** @type {import('jest').Config} */
module.exports = {
    projects: [
        // The self-check's tests sit in a folder of their own, one file per family of checks.
        project("unit", {
            testMatch: ["<rootDir>/tests/unit/**/*.test.ts", "<rootDir>/tests/selfcheck/**/*.test.ts"],
        }),
        project("render"),
        project("e2e", onHost),
        project("hardening", onHost),
        project("federation", onHost),
        project("scale", onHost),
        project("demo", onHost),
        project("cloudflare", onHost),
        project("auth", onHost),
    ],
    verbose: true,
    // The auth suite's host test before every other host suite's (tests/sequencer.js).
    testSequencer: "<rootDir>/tests/sequencer.js",
    // Every unit test runs the whole program in a process of its own: seconds, not milliseconds.
    testTimeout: 120_000,
    // The hardening figures line comes after Jest's own summary.
    reporters: ["default", "<rootDir>/tests/hardening/figuresReporter.js"],
};
