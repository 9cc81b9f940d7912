// Exits 0 when the `node` running it meets package.json's engines.node (">=MAJOR.MINOR"), else
// prints what it wants and what it found, and exits 1. Runs on any Node.js (plain CommonJS), so
// scripts can ask before anything needs the newer one: scripts/demo.sh, scripts/test-all.sh.
const { engines } = require("../package.json");
const want = /^>=(\d+)\.(\d+)$/.exec(engines.node);
if (!want) throw new Error(`package.json engines.node: expected ">=MAJOR.MINOR", found ${engines.node}`);
const [major, minor] = process.versions.node.split(".").map(Number);
const [wantMajor, wantMinor] = [Number(want[1]), Number(want[2])];
if (major > wantMajor || (major === wantMajor && minor >= wantMinor)) process.exit(0);
console.error(`Node.js ${want[1]}.${want[2]} or newer is needed as \`node\` on PATH; found ${process.version}`);
process.exit(1);
