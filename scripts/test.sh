#!/usr/bin/env bash
# `make test`: every test. Makes sure nginx and PostgreSQL are there (installing them
# with apt as root on Debian), builds the binaries the end-to-end tests start, starts a
# throwaway PostgreSQL cluster, runs the tests (cargo-nextest when installed, else
# cargo test), and removes the cluster. Extra arguments go to the test runner. Also
# installs wrk, the rolling-restart test's load (without it that test skips; in CI it
# fails), python3 with PyJWT for the example app and the token tests, and Chromium with
# its driver for the browser tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

find_nginx >/dev/null
# The example app, and a token checked by a library not written here (PyJWT): Debian's
# python3 with its packages, which the tests prefer to any other python3.
/usr/bin/python3 -c 'import jwt, cryptography' 2>/dev/null ||
    apt_install python3 python3-jwt python3-cryptography
# schemathesis: the fuzz test's fuzzer (scripts/ensure-schemathesis.sh).
if ! "$root/scripts/ensure-schemathesis.sh" >/dev/null; then
    case ${CI:-} in true | 1 | yes) die "schemathesis could not be installed" ;; esac
    say "schemathesis could not be installed: the fuzz test will skip"
fi
# wrk: load while instances restart and while full builds switch in.
command -v wrk >/dev/null || apt_install wrk
# The browser tests: Debian's Chromium and chromedriver (without them those tests fail).
ensure_browser
# The multi-host test's hosts: network namespaces (iproute2) reached over ssh. A fresh
# Debian may have neither; as root it gets them, elsewhere the test says what is missing.
if [ "$(id -u)" = 0 ]; then
    missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v ssh >/dev/null || missing+=(openssh-client)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    [ ${#missing[@]} = 0 ] || (apt_install "${missing[@]}") ||
        say "could not install ${missing[*]}: the multi-host test will say what is missing"
fi
cluster=$(mktemp -d /tmp/flotilla-pg-XXXXXX)
trap '"$root/scripts/pg-test-cluster.sh" stop "$cluster"' EXIT
FLOTILLA_TEST_POSTGRES_URL=$("$root/scripts/pg-test-cluster.sh" start "$cluster")
export FLOTILLA_TEST_POSTGRES_URL
say "PostgreSQL test cluster: $FLOTILLA_TEST_POSTGRES_URL"

cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    say "cargo-nextest not found: running cargo test"
    cargo test --workspace --no-fail-fast "$@"
fi
