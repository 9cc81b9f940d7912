// Suites on a real host run for many minutes: an hour per hook and test, and console lines that
// go straight to the terminal as they happen, without Jest's per-call source locations.
import { Console } from "node:console";
import { jest } from "@jest/globals";

jest.setTimeout(60 * 60_000);
globalThis.console = new Console({ stdout: process.stdout, stderr: process.stderr });
