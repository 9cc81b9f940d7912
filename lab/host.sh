#!/usr/bin/env bash
# The disposable e2e host: a Debian rootfs (debootstrap, cached) booted with systemd-nspawn,
# real systemd as PID 1, on its own veth with NAT so apt and pip work inside, reached over SSH.
#
#   host.sh rootfs           build the cached rootfs tarball if missing
#   host.sh up RUN_DIR       boot an ephemeral copy; writes RUN_DIR/{pid,key,key.pub,host.env}
#   host.sh reboot RUN_DIR   power it off and boot the same rootfs again (as a server restarts)
#   host.sh down RUN_DIR     stop it and remove its link and NAT rule (safe to call twice)
#
# E2E_RELEASE: bookworm (Debian 12, the default) or trixie (Debian 13).
# E2E_MACHINE (at most 12 characters: the link is ve-<machine>), E2E_HOST_IP and E2E_GUEST_IP (a
# /30 of their own) let several hosts run side by side. E2E_NAMESERVER, when set, becomes the
# host's resolver. E2E_PACKAGES, when set, boots a copy of the rootfs with those Debian packages
# already installed (built once per list and cached beside it): as if the program's packages step
# had run, so suites that test something else than a bare host skip a dpkg pass of a minute or more.
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(primed …) stops the script too
cache=${E2E_CACHE:-$(cd "$(dirname "$0")/../.." && pwd)/.cache/e2e}
machine=${E2E_MACHINE:-matrix-e2e}
link="ve-${machine}"
host_ip=${E2E_HOST_IP:-10.231.0.1}
guest_ip=${E2E_GUEST_IP:-10.231.0.2}
subnet="${host_ip%.*}.0/30"
# Every test host's network: between them, no NAT, so each sees the others' own addresses (as
# hosts on one private network do; the database host admits the Synapse host's address alone).
guests=10.231.0.0/16
release=${E2E_RELEASE:-bookworm}
case "$release" in bookworm | trixie) ;; *) echo "E2E_RELEASE: bookworm or trixie, not $release" >&2; exit 2 ;; esac
tarball="$cache/$release-rootfs.tar"
forward_before=/run/matrix-pulumi-e2e.ip_forward

# The nameservers a host gets: this machine's, except loopback ones (systemd-resolved's 127.0.0.53
# answers only inside this machine's network namespace), then resolved's upstream servers.
nameservers() {
  local f ns
  for f in /etc/resolv.conf /run/systemd/resolve/resolv.conf; do
    ns=$(awk '$1 == "nameserver" && $2 !~ /^(127\.|::1$)/ {print "nameserver " $2}' "$f" 2>/dev/null || true)
    [ -n "$ns" ] && { printf '%s\n' "$ns"; return 0; }
  done
  echo "this machine's resolver is on loopback only (/etc/resolv.conf), which a host cannot reach: set E2E_NAMESERVER to a DNS server's address" >&2
  return 1
}

rootfs() {
  [ -s "$tarball" ] && return 0
  mkdir -p "$cache"
  # Suites run side by side: one builds the tarball, the others wait for it.
  exec 9>"$cache/$release-rootfs.lock"
  flock 9
  [ -s "$tarball" ] && return 0
  local dir="$cache/$release-rootfs.build"
  rm -rf "$dir"
  echo "debootstrap $release (cached afterwards in $tarball)" >&2
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssh-server,ca-certificates,iproute2 \
    "$release" "$dir" http://deb.debian.org/debian >&2
  ln -sf /lib/systemd/system/systemd-networkd.service "$dir/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
  rm -f "$dir/etc/resolv.conf"
  nameservers > "$dir/etc/resolv.conf"
  echo matrix-e2e > "$dir/etc/hostname"
  # Like a fresh cloud server: apt lists empty, root by key only.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
  rm -rf "$dir"
}

# The rootfs with PACKAGES installed as `apt-get install --no-install-recommends` installs them
# on a booted host: the same postinst scripts (units enabled, clusters created), no service
# started; apt's lists and downloads emptied again. Prints the tarball's path.
#
# Only the download sees the network: the install runs in a network namespace of its own
# (--private-network), so no postinst sees the test machine's sockets. In the test machine's
# namespace, pg_createcluster found this machine's PostgreSQL on 5432 and gave the image's
# cluster 5433 (a host as no user has it). The image is checked before it is cached.
primed_recipe=private-network-1
primed() {
  local list id p
  read -ra list <<< "$1"
  for p in "${list[@]}"; do
    [[ $p =~ ^[a-z0-9][a-z0-9+.-]*$ ]] || { echo "E2E_PACKAGES: not a Debian package name: $p" >&2; exit 2; }
  done
  id=$( (stat -c %Y "$tarball"; echo "$primed_recipe"; printf '%s\n' "${list[@]}" | sort -u) | sha256sum | cut -c1-16)
  local out="$cache/$release-primed-$id.tar"
  if [ ! -s "$out" ]; then
    exec 8>"$cache/primed-$id.lock"
    flock 8
    if [ ! -s "$out" ]; then
      local dir="$cache/primed-$id.build"
      rm -rf "$dir" && mkdir -p "$dir"
      tar -C "$dir" -xf "$tarball"
      echo "rootfs with ${list[*]} (cached afterwards in $out)" >&2
      printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
      chmod 0755 "$dir/usr/sbin/policy-rc.d"
      local nspawn=(systemd-nspawn -q -D "$dir" --register=no --keep-unit --pipe -E DEBIAN_FRONTEND=noninteractive)
      "${nspawn[@]}" sh -c 'apt-get -q update && apt-get -q install -y --download-only --no-install-recommends "$@"' \
        sh "${list[@]}" >&2 < /dev/null || { echo "apt-get install --download-only in $dir failed" >&2; exit 1; }
      "${nspawn[@]}" --private-network sh -c 'apt-get -q install -y --no-install-recommends "$@"' \
        sh "${list[@]}" >&2 < /dev/null || { echo "apt-get install in $dir failed" >&2; exit 1; }
      rm -f "$dir/usr/sbin/policy-rc.d"
      rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb
      check_image "$dir"
      tar -C "$dir" -cf "$out.part" . && mv "$out.part" "$out"
      rm -rf "$dir"
    fi
    exec 8>&-
  fi
  echo "$out"
}

# What a built image must be, as Debian's packages leave a new server: every PostgreSQL cluster
# on the default port 5432 (a second port means a postinst saw another cluster's socket).
check_image() {
  local dir=$1 conf port bad=0
  for conf in "$dir"/etc/postgresql/*/*/postgresql.conf; do
    [ -f "$conf" ] || continue
    port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' "$conf")
    if [ "$port" != 5432 ]; then
      echo "image check: ${conf#"$dir"} has port ${port:-none}, not 5432 (the build saw another cluster)" >&2
      bad=1
    fi
  done
  [ "$bad" = 0 ] || { rm -rf "$dir"; exit 1; }
}

up() {
  local run=$1
  rootfs
  local image=$tarball
  if [ -n "${E2E_PACKAGES:-}" ]; then image=$(primed "$E2E_PACKAGES") || exit 1; fi
  mkdir -p "$run"
  local root="$run/rootfs"
  rm -rf "$root" && mkdir -p "$root"
  tar -C "$root" -xf "$image"
  # Static address by systemd-networkd (before its own 80-container-host0.network); the test
  # machine is the gateway.
  mkdir -p "$root/etc/systemd/network"
  printf '[Match]\nName=host0\n\n[Network]\nAddress=%s/30\nGateway=%s\n' "$guest_ip" "$host_ip" \
    > "$root/etc/systemd/network/10-matrix-e2e.network"
  echo "$machine" > "$root/etc/hostname"
  if [ -n "${E2E_NAMESERVER:-}" ]; then
    printf 'nameserver %s\n' "$E2E_NAMESERVER" > "$root/etc/resolv.conf"
  else
    nameservers > "$root/etc/resolv.conf"
  fi
  rm -f "$run/key" "$run/key.pub"
  ssh-keygen -q -t ed25519 -N '' -C matrix-e2e -f "$run/key"
  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$run/key.pub" "$root/root/.ssh/authorized_keys"
  # A fresh host key per run, pinned by the test as a user would pin it.
  rm -f "$root"/etc/ssh/ssh_host_*
  ssh-keygen -q -t ed25519 -N '' -f "$root/etc/ssh/ssh_host_ed25519_key"
  boot "$run"
  printf 'HOST_IP=%s\nGUEST_IP=%s\nHOST_KEY=%s\n' "$host_ip" "$guest_ip" \
    "$(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" > "$run/host.env"
}

# Boot the rootfs in RUN_DIR and wait for SSH (its veth, address and NAT set up again).
boot() {
  local run=$1
  local root="$run/rootfs"
  setsid systemd-nspawn -b -D "$root" -M "$machine" --register=no --keep-unit --console=read-only \
    --network-veth > "$run/console.log" 2>&1 < /dev/null &
  echo $! > "$run/pid"
  for _ in $(seq 1 100); do ip link show "$link" >/dev/null 2>&1 && break; sleep 0.1; done
  ip addr replace "$host_ip/30" dev "$link"
  ip link set "$link" up
  # One record for the machine (hosts of several suites come and go): the setting before the first.
  (set -C; cat /proc/sys/net/ipv4/ip_forward > "$forward_before") 2>/dev/null || true
  echo 1 > /proc/sys/net/ipv4/ip_forward
  iptables -t nat -C POSTROUTING -s "$subnet" -d "$guests" -j RETURN 2>/dev/null \
    || iptables -t nat -I POSTROUTING 1 -s "$subnet" -d "$guests" -j RETURN
  iptables -t nat -C POSTROUTING -s "$subnet" ! -o "$link" -j MASQUERADE 2>/dev/null \
    || iptables -t nat -A POSTROUTING -s "$subnet" ! -o "$link" -j MASQUERADE
  for _ in $(seq 1 150); do
    ssh -q -i "$run/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o ConnectTimeout=1 "root@$guest_ip" true 2>/dev/null && break
    sleep 0.2
  done
  ssh -q -i "$run/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    "root@$guest_ip" true
}

# Power off (the container's systemd shuts down cleanly) and wait for nspawn to exit.
stop() {
  local run=$1
  if [ -f "$run/pid" ]; then
    local pid; pid=$(cat "$run/pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true   # nspawn asks the container's systemd to power off
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$run/pid"
  fi
}

down() {
  local run=$1
  stop "$run"
  ip link del "$link" 2>/dev/null || true
  while iptables -t nat -D POSTROUTING -s "$subnet" ! -o "$link" -j MASQUERADE 2>/dev/null; do :; done
  while iptables -t nat -D POSTROUTING -s "$subnet" -d "$guests" -j RETURN 2>/dev/null; do :; done
  # Forwarding goes back to how it was, unless another test host still needs it.
  if [ -f "$forward_before" ] && ! ip -o link show | grep -q ' ve-'; then
    cat "$forward_before" > /proc/sys/net/ipv4/ip_forward
    rm -f "$forward_before"
  fi
  rm -rf "$run/rootfs"
}

case "${1:-}" in
  rootfs) rootfs ;;
  up) up "$2" ;;
  reboot) stop "$2"; boot "$2" ;;
  down) down "$2" ;;
  *) echo "usage: $0 rootfs | up RUN_DIR | reboot RUN_DIR | down RUN_DIR" >&2; exit 2 ;;
esac
