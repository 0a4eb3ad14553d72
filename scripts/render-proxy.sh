#!/usr/bin/env bash
# Renders the nginx configuration from proxy/ for one place:
#   scripts/render-proxy.sh OUT_DIR LISTEN WWW_ROOT [UPSTREAMS_FILE]
# writes OUT_DIR/server.conf (the flotilla server block) and OUT_DIR/nginx.conf (a main
# file for running nginx in the foreground with `-p OUT_DIR -c OUT_DIR/nginx.conf`).
# UPSTREAMS_FILE defaults to proxy/upstreams.conf, the placement file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then
    echo "usage: $0 OUT_DIR LISTEN WWW_ROOT [UPSTREAMS_FILE]" >&2
    exit 64
fi
mkdir -p "$1/tmp"
out=$(cd "$1" && pwd)
listen=$2
www=$(mkdir -p "$3" && cd "$3" && pwd)
upstreams=$(realpath "${4:-$root/proxy/upstreams.conf}")
# Escape what sed's replacement treats specially.
esc() { printf '%s' "$1" | sed -e 's/[&|\\]/\\&/g'; }
sed -e "s|@LISTEN@|$(esc "$listen")|g" -e "s|@WWW_ROOT@|$(esc "$www")|g" \
    "$root/proxy/server.conf.in" >"$out/server.conf"
sed -e "s|@PREFIX@|$(esc "$out")|g" -e "s|@UPSTREAMS@|$(esc "$upstreams")|g" \
    "$root/proxy/nginx.conf.in" >"$out/nginx.conf"
