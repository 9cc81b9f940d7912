#!/usr/bin/env bash
# npm run tools:rtc — the MatrixRTC release files the host suites serve to their hosts, built from
# the Go module proxy (livekit-server) and ../shared/upstream (lk-jwt-service, whose pinned SDK
# the proxy refuses), laid out as the projects publish them: LiveKit's linux_amd64 tarball holding
# `livekit-server`, and lk-jwt-service's bare linux_amd64 binary. Users download the real ones
# (docs/calls.md); these machines cannot.
#
#   PULUMI_TOOLS   the test toolchain's cache folder; the files go to $PULUMI_TOOLS/rtc
#   UPSTREAM       the upstream sources (default: ../shared/upstream beside the project)
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
tools=${PULUMI_TOOLS:-$project/.tools/pulumi}
upstream=${UPSTREAM:-$(cd "$project/.." && pwd)/shared/upstream}
LIVEKIT_VERSION=1.13.5
JWT_VERSION=0.5.0
JWT_SDK=v2.18.0
# Bump when the recipe below changes, so cached builds are redone.
RECIPE=1

start=$(date +%s)
phase() { echo "--- tools:rtc: $1 ($(( $(date +%s) - start ))s)"; }
# Without DWARF from the compiler: every link's -w drops it from the binary anyway.
export GOSUMDB=off GOFLAGS="-buildvcs=false -gcflags=all=-dwarf=false" GOTOOLCHAIN=local CGO_ENABLED=0
out=$tools/rtc
work=$out/build
mkdir -p "$work"
[ -d "$upstream/lk-jwt-service-v$JWT_VERSION" ] || { echo "no lk-jwt-service sources at $upstream (set UPSTREAM)" >&2; exit 1; }
log=$work/build.log
quiet() { "$@" >>"$log" 2>&1 || { echo "failed: $* (last lines of $log):" >&2; tail -n 40 "$log" >&2; return 1; }; }
fresh() { [ "$(cat "$work/$1.stamp" 2>/dev/null || true)" != "$2" ]; }
stamped() { printf '%s\n' "$2" > "$work/$1.stamp"; }

tarball=$out/livekit_${LIVEKIT_VERSION}_linux_amd64.tar.gz
stamp="livekit $LIVEKIT_VERSION r$RECIPE"
if fresh livekit "$stamp" || [ ! -f "$tarball" ]; then
  phase "livekit-server v$LIVEKIT_VERSION (Go module proxy; about 4 min cold)"
  rm -rf "$work/livekit" && mkdir -p "$work/livekit/bin"
  quiet env GOBIN="$work/livekit/bin" go install -trimpath -ldflags='-s -w' \
    "github.com/livekit/livekit-server/cmd/server@v$LIVEKIT_VERSION"
  mv "$work/livekit/bin/server" "$work/livekit/livekit-server"
  "$work/livekit/livekit-server" --version
  # The release's layout, packed reproducibly: one build gives one checksum.
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/livekit" -cf - livekit-server \
    | gzip -n > "$tarball.part"
  mv -f "$tarball.part" "$tarball"
  stamped livekit "$stamp"
fi

binary=$out/lk-jwt-service_linux_amd64
stamp="lk-jwt-service $JWT_VERSION sdk $JWT_SDK r$RECIPE"
if fresh jwt "$stamp" || [ ! -f "$binary" ]; then
  phase "lk-jwt-service v$JWT_VERSION (server-sdk-go $JWT_SDK from the proxy)"
  src=$work/lk-jwt-service
  rm -rf "$src" && cp -r "$upstream/lk-jwt-service-v$JWT_VERSION" "$src" && chmod -R u+w "$src"
  (cd "$src" && quiet go get "github.com/livekit/server-sdk-go/v2@$JWT_SDK" && quiet go mod tidy \
    && quiet go build -trimpath -ldflags='-s -w' -o "$binary.part" .)
  mv -f "$binary.part" "$binary"
  stamped jwt "$stamp"
fi

for f in "$tarball" "$binary"; do sha256sum "$f" | cut -d' ' -f1 > "$f.sha256"; done
phase "done: $(basename "$tarball") $(cat "$tarball.sha256"), $(basename "$binary") $(cat "$binary.sha256")"
