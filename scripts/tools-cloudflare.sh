#!/usr/bin/env bash
# npm run tools:cloudflare — the real Cloudflare provider plugin (pulumi-resource-cloudflare), built
# from ../shared/upstream (pulumi-cloudflare with terraform-provider-cloudflare as its `upstream`,
# the repo's patches applied) and the Go module proxy, then installed as a plugin in tools:pulumi's
# PULUMI_HOME under the version @pulumi/cloudflare asks the engine for. Users never need this:
# the official CLI downloads the plugin (docs/testing.md, "The Cloudflare provider").
#
#   PULUMI_TOOLS        the cache folder shared with tools:pulumi (default: .tools/pulumi)
#   UPSTREAM            the upstream sources (default: ../shared/upstream beside the project)
#   CLOUDFLARE_FULL=1   build every resource (about an hour on one core, 16 GB of memory in the
#                       link, a 23 GB build cache); by default the provider is built with its
#                       resource list cut to the DNS records this program registers (README: DNS)
#
#   --build-only        build (or find) the binary, do not install it (test:all builds while
#                       tools:pulumi builds the CLI, and installs once both are done)
#
# The install uses tools:pulumi's CLI: run that first. Rebuilt only when the stamp differs; Go's
# build cache is dropped afterwards (the binary is what is kept).
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
tools=${PULUMI_TOOLS:-$project/.tools/pulumi}
upstream=${UPSTREAM:-$(cd "$project/.." && pwd)/shared/upstream}
# The sources: pulumi-cloudflare v6.17.0 (+30 commits) and the upstream tag it pins.
PROVIDER_SRC=pulumi-cloudflare-52f065c5
UPSTREAM_SRC=terraform-provider-cloudflare-v5.19.1
VERSION=$(node -p 'require(process.argv[1]).version' "$project/node_modules/@pulumi/cloudflare/package.json" 2>/dev/null \
  || sed -n 's/.*"@pulumi\/cloudflare": "\([0-9.]*\)".*/\1/p' "$project/package.json")
# What the trimmed build keeps: upstream service packages (internal/services/<name>).
KEEP=${CLOUDFLARE_KEEP:-dns_record}
[ "${CLOUDFLARE_FULL:-0}" = 1 ] && KEEP=all
# Bump when the recipe below changes, so cached builds are redone.
RECIPE=2

start=$(date +%s)
phase() { echo "--- tools:cloudflare: $1 ($(( $(date +%s) - start ))s)"; }

# Without DWARF from the compiler: the link's -w drops it from the binary anyway.
export GOSUMDB=off GOFLAGS="-buildvcs=false -mod=mod -gcflags=all=-dwarf=false" GOTOOLCHAIN=local CGO_ENABLED=0
work=$tools/build
# The sources' copy and a build cache of its own, dropped after the build (the full build's cache
# is 23 GB), in memory when /dev/shm has room for them (test:all builds beside other builds, whose
# disk they would share), else beside the binary.
scratch=$work
if [ "${CLOUDFLARE_FULL:-0}" != 1 ] \
  && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')" -gt $((8 * 1024 * 1024)) ] 2>/dev/null; then
  scratch=/dev/shm/matrix-pulumi-cloudflare
  trap 'rm -rf "$scratch"' EXIT # freed however the script ends
fi
export GOCACHE=$scratch/cloudflare-gocache
mkdir -p "$work"
if [ ! -d "$upstream/$PROVIDER_SRC" ] || [ ! -d "$upstream/$UPSTREAM_SRC" ]; then
  echo "tools:cloudflare builds from $upstream/$PROVIDER_SRC and $UPSTREAM_SRC, which exist only on this project's CI and test machines; with the official Pulumi CLI the plugin is downloaded by itself" >&2
  exit 1
fi
log=$work/cloudflare.log
quiet() { "$@" >>"$log" 2>&1 || { echo "failed: $* (last lines of $log):" >&2; tail -n 40 "$log" >&2; return 1; }; }

binary=$work/pulumi-resource-cloudflare
stamp="cloudflare $VERSION from $PROVIDER_SRC+$UPSTREAM_SRC keep=$KEEP r$RECIPE"
if [ "$(cat "$work/cloudflare.stamp" 2>/dev/null || true)" != "$stamp" ] || [ ! -x "$binary" ]; then
  : > "$log"
  phase "layout: provider/ from $PROVIDER_SRC, upstream/ from $UPSTREAM_SRC with patches/ applied"
  src=$scratch/cloudflare-src
  rm -rf "$src" && mkdir -p "$src"
  cp -r "$upstream/$PROVIDER_SRC/provider" "$src/provider"
  cp -r "$upstream/$UPSTREAM_SRC" "$src/upstream"
  chmod -R u+w "$src"
  for p in "$upstream/$PROVIDER_SRC"/patches/*.patch; do (cd "$src/upstream" && quiet patch -s -p1 < "$p"); done
  # provider/go.mod replaces the SDK module with ../sdk, which the provider binary never imports.
  mkdir -p "$src/sdk" && printf 'module github.com/pulumi/pulumi-cloudflare/sdk/v6\n\ngo 1.24\n' > "$src/sdk/go.mod"
  # The package schema is generated from schema.json, which the sources lack. The engine asks a
  # provider for it only to generate SDKs; create, read, update and delete do not use it.
  printf '{"name":"cloudflare","version":"%s","resources":{},"functions":{}}\n' "$VERSION" \
    > "$src/provider/cmd/pulumi-resource-cloudflare/schema-embed.json"

  if [ "$KEEP" != all ]; then
    phase "trim: register only internal/services/{$KEEP} (CLOUDFLARE_FULL=1 builds all)"
    # Upstream's provider lists ~230 resources and ~300 data sources, each its own package; the
    # lists and their imports are cut to KEEP, so the rest is never compiled or linked.
    KEEP=$KEEP perl -i -ne '
      BEGIN { %keep = map { $_ => 1 } split /,/, $ENV{KEEP} }
      if (m{^\t"github.com/cloudflare/terraform-provider-cloudflare/internal/services/([a-z0-9_]+)"$}) { print if $keep{$1}; next }
      if (m{^\t\t([a-z0-9_]+)\.New\w*,\s*(//.*)?$}) { print if $keep{$1}; next }
      print' "$src/upstream/internal/provider.go"
    # The bridge's mapping names every resource; drop those the trimmed provider lacks.
    perl -i -pe 's/^(\tprov\.MustComputeTokens\(|\tresetMigratedResourcesSchemaVersion\(&prov\))/\ttrimToShimmed(&prov)\n$1/' \
      "$src/provider/resources.go"
    cat >> "$src/provider/resources.go" <<'EOF'

// trimToShimmed (added by matrix-pulumi's tools:cloudflare) drops the mappings of resources and
// data sources that the trimmed upstream provider does not register.
func trimToShimmed(prov *info.Provider) {
	for name := range prov.Resources {
		if _, ok := prov.P.ResourcesMap().GetOk(name); !ok {
			delete(prov.Resources, name)
		}
	}
	for name := range prov.DataSources {
		if _, ok := prov.P.DataSourcesMap().GetOk(name); !ok {
			delete(prov.DataSources, name)
		}
	}
}
EOF
    [ "$(grep -c 'trimToShimmed(&prov)' "$src/provider/resources.go")" = 2 ] \
      || { echo "tools:cloudflare: the trim no longer matches provider/resources.go; update the recipe" >&2; exit 1; }
    # And the settings the bridge applies at start-up (bridge-metadata.json's auto-settings) to
    # those resources and data sources (cloudflare_<name>, and the plural list data source).
    KEEP=$KEEP node -e '
      const fs = require("fs"), file = process.argv[1], meta = JSON.parse(fs.readFileSync(file, "utf8"));
      const kept = new Set(process.env.KEEP.split(",").flatMap((k) => ["cloudflare_" + k, "cloudflare_" + k + "s"]));
      for (const kind of ["resources", "datasources"]) {
        const m = meta["auto-settings"][kind];
        if (m) for (const key of Object.keys(m)) if (!kept.has(key)) delete m[key];
      }
      fs.writeFileSync(file, JSON.stringify(meta));
    ' "$src/provider/cmd/pulumi-resource-cloudflare/bridge-metadata.json"
  fi

  phase "pulumi-java v1.30.0 placed by hand (the Go proxy serves its zip, not its .info and .mod)"
  gomodcache=$(go env GOMODCACHE)
  java=$gomodcache/cache/download/github.com/pulumi/pulumi-java/@v
  if [ ! -s "$java/v1.30.0.mod" ]; then
    mkdir -p "$java"
    proxy=$(go env GOPROXY | cut -d, -f1)
    quiet curl -fsSL -o "$java/v1.30.0.zip" "$proxy/github.com/pulumi/pulumi-java/@v/v1.30.0.zip"
    unzip -p "$java/v1.30.0.zip" 'github.com/pulumi/pulumi-java@v1.30.0/go.mod' > "$java/v1.30.0.mod"
    printf '{"Version":"v1.30.0"}\n' > "$java/v1.30.0.info"
  fi

  phase "build pulumi-resource-cloudflare $VERSION (modules from the Go proxy; trimmed: about 4 min on 2 cores, full: about an hour)"
  (cd "$src/provider" && quiet go build -trimpath -o "$binary.new" \
    -ldflags "-s -w -X github.com/pulumi/pulumi-cloudflare/provider/v6/pkg/version.Version=$VERSION" \
    ./cmd/pulumi-resource-cloudflare)
  mv "$binary.new" "$binary"
  printf '%s\n' "$stamp" > "$work/cloudflare.stamp"
  rm -rf "$src"
  rm -rf "$GOCACHE"
fi

if [ "${1:-}" = --build-only ]; then
  phase "built: $binary ($(du -h "$binary" | cut -f1)); not installed (--build-only)"
  exit 0
fi
if [ ! -x "$tools/bin/pulumi" ]; then
  echo "tools:cloudflare installs the plugin with tools:pulumi's CLI: run npm run tools:pulumi first (PULUMI_TOOLS=$tools)" >&2
  exit 1
fi
export PULUMI_HOME=$tools/home PULUMI_SKIP_UPDATE_CHECK=1 PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
want=$(sha256sum < "$binary" | cut -d' ' -f1)
if [ "$want" != "$(cat "$work/cloudflare.installed" 2>/dev/null || true)" ]; then
  phase "install plugin cloudflare $VERSION"
  "$tools/bin/pulumi" plugin install resource cloudflare "$VERSION" -f "$binary" --reinstall >/dev/null
  echo "$want" > "$work/cloudflare.installed"
fi
phase "ready: cloudflare $VERSION ($(du -h "$binary" | cut -f1))"
