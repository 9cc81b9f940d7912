#!/usr/bin/env bash
# npm run demo            this program's main job on this machine, in one command: a local Debian
#                         host, a local CA and DNS, and `pulumi up` of a stack named demo
# npm run demo -- down    destroy the stack and the host; nothing is left running
#
# Needs root on Debian 12 (it boots the host with systemd-nspawn). Installs what it needs: Debian
# packages, node modules, and the Pulumi toolchain when no `pulumi` is on PATH (docs/demo.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
phase() { echo "--- demo: $1 ($(( $(date +%s) - start ))s)"; }
[ "$(id -u)" = 0 ] || { echo "npm run demo needs root: it boots a local host with systemd-nspawn" >&2; exit 1; }
node scripts/node-version.js || exit 1   # the Node.js package.json's engines names

if [ "${1:-up}" = up ]; then
  phase "Debian packages"
  bash scripts/apt-packages.sh demo
  phase "node modules"
  if [ ! -x node_modules/.bin/tsx ]; then npm ci --no-audit --no-fund; fi
  phase "Pulumi"
  if [ -z "${PULUMI_TOOLS:-}" ] && command -v pulumi >/dev/null; then
    echo "using $(command -v pulumi) ($(pulumi version))"
  else
    export PULUMI_TOOLS=${PULUMI_TOOLS:-$PWD/.tools/pulumi}
    npm run tools:pulumi
  fi
  phase "a Python venv for building the Synapse wheels the host installs"
  venv=${SYNAPSE_VENV:-$PWD/.cache/pip-venv}
  [ -x "$venv/bin/pip" ] || /usr/bin/python3 -m venv "$venv"
  export SYNAPSE_VENV=$venv
fi
exec node_modules/.bin/tsx scripts/demo.ts "$@"
