// Jest's own order (failed files first, then the longest by the last run, else the largest file),
// with the auth suite's files last: `npm run test:all` builds MAS's tarball beside the other host
// suites, and the auth suite waits for it (lab/artifacts.ts awaitMasBuild).
const Sequencer = require("@jest/test-sequencer").default;

const last = (test) => /[/\\]tests[/\\]auth[/\\]/.test(test.path);

class AuthLast extends Sequencer {
    async sort(tests) {
        const sorted = await super.sort(tests);
        return [...sorted.filter((t) => !last(t)), ...sorted.filter(last)];
    }
}

module.exports = AuthLast;
