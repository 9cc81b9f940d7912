// Suites on a real host run for minutes: their console lines go straight to the terminal as they
// happen, without Jest's per-call source locations.
import { Console } from "node:console";

globalThis.console = new Console({ stdout: process.stdout, stderr: process.stderr });
