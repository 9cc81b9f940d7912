// The package's API, for Pulumi programs that compose a Matrix homeserver with resources of their
// own (examples/): `import { MatrixHomeserver } from "matrix-pulumi/homeserver"`. The package's
// main, index.ts, is the stack program itself (it reads the stack's `matrix:` config).
export {
    MatrixHomeserver,
    type MachineArgs,
    type MatrixHomeserverArgs,
    type MatrixHomeserverOptions,
} from "./components/matrixHomeserver";
export { ConfigError, DEFAULTS, parseHomeserverConfig, type StackConfig } from "./config";
export { PreflightError } from "./lib/preflight";
