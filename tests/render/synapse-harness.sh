#!/usr/bin/env bash
# Runs inside `unshare --mount`: private /etc/matrix-synapse and /var/lib/matrix-synapse so the
# rendered files are read from the exact paths the host uses. $1: folder with the rendered
# files; $2: the Synapse venv. Prints Synapse's verdict, then the probe's JSON.
set -euo pipefail
src=$1 venv=$2
mount -t tmpfs tmpfs /etc/matrix-synapse
mount -t tmpfs tmpfs /var/lib/matrix-synapse
cp "$src"/*.yaml /etc/matrix-synapse/
if compgen -G "$src/*.pem" >/dev/null; then cp "$src"/*.pem /etc/matrix-synapse/; fi
"$venv/bin/generate_signing_key" -o /var/lib/matrix-synapse/signing.key
args=(-c /etc/matrix-synapse/homeserver.yaml -c /etc/matrix-synapse/secrets.yaml)
"$venv/bin/python" -m synapse.config "${args[@]}" 2>&1 || { echo "exit $?"; exit 0; }
echo "=== probe"
"$venv/bin/python" "$(dirname "$0")/synapse-probe.py" "${args[@]}"
