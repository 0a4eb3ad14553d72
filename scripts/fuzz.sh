#!/usr/bin/env bash
# `make fuzz`: the fuzz test (shared/testkit/tests/fleet/fuzz.rs) alone, deeper than
# `make test` runs it: schemathesis against every service through nginx, signed in, on
# SQLite and on PostgreSQL, FUZZ_EXAMPLES test cases per operation and phase (500 by
# default; `make test` tries 25). FUZZ_SEED replays a run (each run prints its seed).
# Prints schemathesis' findings as they come; extra arguments go to the test runner.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

find_nginx >/dev/null
"$root/scripts/ensure-schemathesis.sh" >/dev/null
cluster=$(mktemp -d /tmp/flotilla-pg-XXXXXX)
trap '"$root/scripts/pg-test-cluster.sh" stop "$cluster"' EXIT
FLOTILLA_TEST_POSTGRES_URL=$("$root/scripts/pg-test-cluster.sh" start "$cluster")
export FLOTILLA_TEST_POSTGRES_URL
export FLOTILLA_FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-500}
[ -z "${FUZZ_SEED:-}" ] || export FLOTILLA_FUZZ_SEED=$FUZZ_SEED
say "schemathesis, $FLOTILLA_FUZZ_EXAMPLES examples per operation, on SQLite and PostgreSQL"

cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p flotilla-testkit --test fleet --no-fail-fast --no-capture \
        -E 'test(/^fuzz::/)' "$@"
else
    cargo test -p flotilla-testkit --test fleet --no-fail-fast "$@" -- fuzz:: --nocapture
fi
