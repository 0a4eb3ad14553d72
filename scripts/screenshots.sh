#!/usr/bin/env bash
# `make screenshots`: every page of the browser walk (the flows of the browser tests) at
# 360 and 1280 px, light and dark, into var/screenshots/ (emptied first), for review.
# Makes sure nginx and the browser are there (installing them with apt as root on
# Debian), builds the binaries, and runs the walk on a throwaway fleet and SQLite
# database.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

find_nginx >/dev/null
ensure_browser
cargo build --workspace --bins
exec "${CARGO_TARGET_DIR:-$root/target}/debug/flotilla-screenshots" "$root/var/screenshots"
