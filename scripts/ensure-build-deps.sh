#!/usr/bin/env bash
# Installs what the build needs beyond Rust (gcc, pkg-config, libssl-dev) when missing,
# with apt as root on Debian, or says what to install.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ensure_build_deps
