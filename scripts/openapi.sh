#!/usr/bin/env bash
# `make openapi`: each service's OpenAPI document (`flotilla-<service> openapi`, the
# same one it serves at /<service>/openapi.json), merged into the fleet's by
# `flotilla-pages openapi`, written to docs/openapi.json. The static site's reference
# page (/api/) is built from that file, so the pages binary is built again after it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

cargo build --workspace --bins
tmp=$(mktemp -d /tmp/flotilla-openapi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for service in signup login profile admin worker; do
    target/debug/flotilla-$service openapi >"$tmp/$service.json"
done
target/debug/flotilla-pages openapi "$tmp"/{signup,login,profile,admin,worker}.json >"$tmp/fleet.json"
if cmp -s "$tmp/fleet.json" docs/openapi.json; then
    say "docs/openapi.json is current"
else
    mv "$tmp/fleet.json" docs/openapi.json
    say "wrote docs/openapi.json; building the pages binary again with it"
    cargo build -p flotilla-pages
fi
