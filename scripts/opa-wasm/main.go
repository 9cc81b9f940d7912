// opa-wasm: what `opa build -t wasm -e ENTRYPOINT… FILE…` does, as MAS's policies/Makefile runs
// it (bundle.tar.gz with policy.wasm, in the working folder), through OPA's compile package with
// the options the CLI's build command gives it by default. tools:mas builds this instead of the
// whole CLI, which also brings OPA's server, its storage engines and its telemetry: half the
// packages to compile (docs/testing.md: Matrix Authentication Service).
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/compile"
)

func main() {
	if err := build(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "opa-wasm:", err)
		os.Exit(1)
	}
}

func build(args []string) error {
	if len(args) < 3 || args[0] != "build" || args[1] != "-t" || args[2] != "wasm" {
		return fmt.Errorf("usage: opa-wasm build -t wasm [-e ENTRYPOINT]... FILE..., not %q", strings.Join(args, " "))
	}
	var entrypoints, paths []string
	for i := 3; i < len(args); i++ {
		switch {
		case args[i] == "-e" && i+1 < len(args):
			i++
			entrypoints = append(entrypoints, args[i])
		case strings.HasPrefix(args[i], "-"):
			return fmt.Errorf("%s: only -e is understood", args[i])
		default:
			paths = append(paths, args[i])
		}
	}
	out, err := os.Create("bundle.tar.gz")
	if err != nil {
		return err
	}
	err = compile.New().
		WithTarget(compile.TargetWasm).
		WithEntrypoints(entrypoints...).
		WithRegoAnnotationEntrypoints(true).
		WithPaths(paths...).
		WithOutput(out).
		Build(context.Background())
	if closeErr := out.Close(); err == nil {
		err = closeErr
	}
	return err
}
