// Jest's own order (failed files first, then the longest by the last run, else the largest file),
// with the auth suite's host test first: `npm run test:all` builds MAS's tarball while the host
// suites run, and the auth suite waits for it (lab/artifacts.ts awaitMasBuild). Waiting first costs
// no CPU (MAS's build and the suite beside it take it); waiting last left the auth suite alone at
// the end, one core idle (docs/testing.md: CI figures). Its config test, seconds long, keeps its
// place (the smallest file, near the end).
const Sequencer = require("@jest/test-sequencer").default;

const auth = (test) => /[/\\]tests[/\\]auth[/\\]auth\.test\.ts$/.test(test.path);

class AuthFirst extends Sequencer {
    async sort(tests) {
        const sorted = await super.sort(tests);
        return [...sorted.filter(auth), ...sorted.filter((t) => !auth(t))];
    }
}

module.exports = AuthFirst;
