#!/usr/bin/env bash
# Prints the path of nginx, installing it with apt when missing (root on Debian), or
# says exactly what to install.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
find_nginx
