#!/usr/bin/env bash
# `make doctor`: what this machine has and lacks for running and testing flotilla.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
ok() { printf '  ok    %s\n' "$*"; }
missing() { printf '  MISS  %s\n' "$*"; problems=$((problems + 1)); }
problems=0
echo "flotilla doctor"
command -v cargo >/dev/null && ok "$(cargo --version)" || missing "cargo: install Rust (rustup)"
cargo nextest --version >/dev/null 2>&1 && ok "cargo-nextest" || ok "cargo-nextest absent (make test uses cargo test)"
nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$nginx" ] && ok "nginx: $("$nginx" -v 2>&1)" || missing "nginx: make run/test install it as root, or: apt-get install nginx"
pg=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg" ] && ok "PostgreSQL: $("$pg/postgres" --version)" || missing "PostgreSQL: make test installs it as root, or: apt-get install postgresql"
command -v python3 >/dev/null && ok "python3 (make run's example app): $(python3 --version 2>&1)" || missing "python3: make run installs it as root, or: apt-get install python3"
/usr/bin/python3 -c 'import jwt, cryptography' 2>/dev/null && ok "PyJWT (make test)" || ok "PyJWT absent (make test installs it as root, or: apt-get install python3-jwt python3-cryptography)"
if st=$("$root/scripts/ensure-schemathesis.sh" --check); then
    ok "schemathesis $("$st" --version 2>&1 | sed -n 's/.*version //p') (the fuzz test, make fuzz)"
else
    ok "schemathesis absent (make test and make fuzz install it from PyPI into ~/.cache/flotilla)"
fi
command -v wrk >/dev/null && ok "wrk (make bench)" || ok "wrk absent (make bench installs it as root, or: apt-get install wrk)"
if command -v chromedriver >/dev/null || [ -x /usr/bin/chromedriver ]; then
    ok "chromedriver (browser tests, make screenshots): $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
else
    missing "chromium and chromedriver (browser tests): make test installs them as root, or: apt-get install chromium chromium-driver fonts-liberation"
fi
fc-list 2>/dev/null | grep -qi liberation && ok "fonts-liberation" || ok "fonts-liberation absent (make test installs it as root, or: apt-get install fonts-liberation)"
example=${FLOTILLA_EXAMPLE_ADDR:-127.0.0.1:7190}
for port in ${FLOTILLA_HTTP_PORT:-8080} 7101 7102 7103 7104 7105 7110 7111 7112 "${example##*:}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        missing "port $port is in use (make run needs it)"
    fi
done
[ $problems = 0 ] && echo "all good" || { echo "$problems problem(s)"; exit 1; }
