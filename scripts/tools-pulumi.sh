#!/usr/bin/env bash
# npm run tools:pulumi — the test toolchain: the real Pulumi CLI, the Node.js language host, the
# dynamic-provider shim and the command and random providers, built from the Go module proxy and
# ../shared/upstream (sources the proxy refuses) into one cache folder that later runs reuse.
# Users install Pulumi as usual; this is for machines that cannot download it (docs/testing.md).
#
#   PULUMI_TOOLS   the cache folder (default: .tools/pulumi in the project; CI: /var/cache/...)
#   UPSTREAM       the upstream sources (default: ../shared/upstream beside the project)
#
# Afterwards: $PULUMI_TOOLS/bin holds pulumi, pulumi-language-nodejs and
# pulumi-resource-pulumi-nodejs; $PULUMI_TOOLS/home is a PULUMI_HOME with both providers
# installed as plugins. Each part is rebuilt only when its stamp (version + recipe) differs.
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
tools=${PULUMI_TOOLS:-$project/.tools/pulumi}
upstream=${UPSTREAM:-$(cd "$project/.." && pwd)/shared/upstream}
CLI_VERSION=3.274.1
COMMAND_VERSION=1.2.1
RANDOM_VERSION=4.21.2
# Bump when the recipe below changes, so cached builds are redone.
RECIPE=1

start=$(date +%s)
phase() { echo "--- tools:pulumi: $1 ($(( $(date +%s) - start ))s)"; }

# Without DWARF from the compiler: every link's -w drops it from the binary anyway.
export GOSUMDB=off GOFLAGS="-buildvcs=false -gcflags=all=-dwarf=false" GOTOOLCHAIN=local CGO_ENABLED=0
bin=$tools/bin
work=$tools/build
mkdir -p "$bin" "$work"
# Where this cannot work, say so before any build: a user's clone has no ../shared/upstream, and
# the official CLI (which downloads its plugins itself) is the way there.
official="install the official Pulumi CLI instead (curl -fsSL https://get.pulumi.com | sh, or see https://www.pulumi.com/docs/iac/download-install/), put it on PATH and run again"
if [ ! -d "$upstream/pulumi-command-v$COMMAND_VERSION" ]; then
  echo "tools:pulumi builds the Pulumi CLI and its plugins from the sources in $upstream, which exist only on this project's CI and test machines (set UPSTREAM if yours are elsewhere); $official" >&2
  exit 1
fi
go_minor=$( (go env GOVERSION 2>/dev/null || true) | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 26 ]; then
  echo "tools:pulumi needs Go 1.26 or newer to build the toolchain; found: $(go env GOVERSION 2>/dev/null || echo 'no go on PATH') (Debian 12's apt has 1.19: https://go.dev/dl/ has current releases); or $official" >&2
  exit 1
fi

# Go's chatter (a line per module downloaded) goes to a log; a failure shows its end.
log=$work/build.log
quiet() { "$@" >>"$log" 2>&1 || { echo "failed: $* (last lines of $log):" >&2; tail -n 40 "$log" >&2; return 1; }; }

# fresh NAME STAMP: true when $work/NAME.stamp differs (the part must be built).
fresh() { [ "$(cat "$work/$1.stamp" 2>/dev/null || true)" != "$2" ]; }
stamped() { printf '%s\n' "$2" > "$work/$1.stamp"; }
ldflags() { printf -- '-s -w -X %s=%s' "$1" "$2"; }

# The CLI: a wrapper module requiring pkg/v3 and sdk/v3 (the proxy serves v3.274.1), with pkg's
# one non-local replace copied, since `go install` refuses modules with replace directives.
stamp="cli $CLI_VERSION r$RECIPE"
if fresh cli "$stamp" || [ ! -x "$bin/pulumi" ]; then
  phase "pulumi CLI v$CLI_VERSION (Go module proxy; about 8 min cold)"
  mod=$work/cli
  rm -rf "$mod" && mkdir -p "$mod"
  cat > "$mod/go.mod" <<EOF
module matrix-pulumi/tools/pulumi

go 1.25

require (
	github.com/pulumi/pulumi/pkg/v3 v$CLI_VERSION
	github.com/pulumi/pulumi/sdk/v3 v$CLI_VERSION
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
EOF
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"\n' > "$mod/tools.go"
  (cd "$mod" && quiet go mod tidy && quiet go build -trimpath -o "$bin/pulumi" \
    -ldflags "$(ldflags github.com/pulumi/pulumi/sdk/v3/go/common/version.Version "v$CLI_VERSION")" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  stamped cli "$stamp"
fi

# The Node.js language host, v3.259.0's source with ExistsResource forwarded (the v3.274 protocol
# added it), built against the CLI's modules.
stamp="langhost 3.259.0+exists against $CLI_VERSION r$RECIPE"
if fresh langhost "$stamp" || [ ! -x "$bin/pulumi-language-nodejs" ]; then
  phase "Node.js language host"
  src=$work/langhost
  rm -rf "$src" && mkdir -p "$src"
  cp -r "$upstream/pulumi-v3.259.0/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && patch -s -p1 < "$upstream/patches/langhost-exists-resource.patch")
  (cd "$src/sdk/nodejs/cmd/pulumi-language-nodejs" \
    && go mod edit -dropreplace github.com/pulumi/pulumi/pkg/v3 -dropreplace github.com/pulumi/pulumi/sdk/v3 \
      -require "github.com/pulumi/pulumi/pkg/v3@v$CLI_VERSION" -require "github.com/pulumi/pulumi/sdk/v3@v$CLI_VERSION" \
    && quiet go mod tidy \
    && quiet go build -trimpath -o "$bin/pulumi-language-nodejs" \
      -ldflags "$(ldflags github.com/pulumi/pulumi/sdk/v3/go/common/version.Version "v$CLI_VERSION")" .)
  stamped langhost "$stamp"
fi
# The dynamic-provider shim is a shell script: on PATH as it is.
install -m 0755 "$upstream/pulumi-v3.259.0/sdk/nodejs/dist/pulumi-resource-pulumi-nodejs" "$bin/"

provider() { # NAME VERSION SOURCE_DIR LDFLAG_VAR [PREP...]
  local name=$1 version=$2 srcdir=$3 var=$4
  local stamp="$name $version r$RECIPE"
  if fresh "$name" "$stamp" || [ ! -x "$work/pulumi-resource-$name" ]; then
    phase "$name provider v$version"
    local src=$work/$name-src
    rm -rf "$src" && mkdir -p "$src"
    cp -r "$srcdir/." "$src/"
    chmod -R u+w "$src"
    (cd "$src/provider" && shift 4 && quiet "$@" \
      && quiet go build -trimpath -o "$work/pulumi-resource-$name" -ldflags "$(ldflags "$var" "$version")" \
        "./cmd/pulumi-resource-$name")
    stamped "$name" "$stamp"
  fi
}
provider command "$COMMAND_VERSION" "$upstream/pulumi-command-v$COMMAND_VERSION" \
  github.com/pulumi/pulumi-command/provider/pkg/version.Version true
# The random provider's schema is generated first; the tag v4.21.1 does not build here, this
# commit does, and it is installed as the version @pulumi/random 4.21.2 asks the engine for.
provider random "$RANDOM_VERSION" "$upstream/pulumi-random-f64d8726" \
  github.com/pulumi/pulumi-random/provider/v4/pkg/version.Version \
  bash -c "cd cmd/pulumi-resource-random && VERSION=$RANDOM_VERSION go run generate.go"

# A PULUMI_HOME with both providers installed as plugins (no download is ever attempted).
export PULUMI_HOME=$tools/home PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
mkdir -p "$PULUMI_HOME"
for p in "command $COMMAND_VERSION" "random $RANDOM_VERSION"; do
  # shellcheck disable=SC2086 # two words: name and version
  set -- $p
  want=$(sha256sum < "$work/pulumi-resource-$1" | cut -d' ' -f1)
  have=$(cat "$work/$1.installed" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    phase "install plugin $1 $2"
    "$bin/pulumi" plugin install resource "$1" "$2" -f "$work/pulumi-resource-$1" --reinstall >/dev/null
    echo "$want" > "$work/$1.installed"
  fi
done

"$bin/pulumi" version >/dev/null
phase "ready: $("$bin/pulumi" version) in $tools (plugins:$("$bin/pulumi" plugin ls 2>/dev/null | awk '$2 == "resource" {printf " %s %s", $1, $3}'))"
