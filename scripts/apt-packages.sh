#!/usr/bin/env bash
# Installs the Debian packages a purpose needs, when any is missing:
#   demo   a local host (debootstrap, systemd-nspawn), its CA (pebble), the Synapse wheels (pip
#          builds psycopg2 from source: a compiler, Python's and libpq's headers) and certutil
#          for trusting the demo's CA in a browser
#   test   that, plus what the suites use: nginx, PostgreSQL, shellcheck, testssl, Chromium, …
# The daemons these packages bring are kept from starting on this machine (tests start their own).
set -euo pipefail
demo=(debootstrap systemd-container pebble iptables iproute2 openssh-client openssl curl ca-certificates
  python3-venv build-essential python3-dev libpq-dev libnss3-tools util-linux)
test=("${demo[@]}" nginx postgresql shellcheck nftables testssl.sh chromium dnsmasq-base prometheus
  prometheus-alertmanager coturn)
case "${1:-}" in
  demo) packages=("${demo[@]}") ;;
  test) packages=("${test[@]}") ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "Debian packages: all ${#packages[@]} in place"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
# A policy of the machine's own stays as it is; ours (deny every start) goes away afterwards.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
