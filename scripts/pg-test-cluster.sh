#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests:
#   scripts/pg-test-cluster.sh start DIR   initdb + pg_ctl start on a free port;
#                                          prints the admin URL on stdout
#   scripts/pg-test-cluster.sh stop DIR    stops it and removes DIR
#   scripts/pg-test-cluster.sh halt DIR    stops the server, keeping its data (fault tests)
#   scripts/pg-test-cluster.sh resume DIR  starts it again on the same port
# Installs PostgreSQL with apt when missing (root on Debian). initdb refuses to run as
# root, so as root the cluster belongs to the `postgres` user (or `flotilla-test`,
# made on the spot). Durability is off: it is a test cluster.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# = 2 ] || { say "usage: $0 start|stop|halt|resume DIR"; exit 64; }
command=$1
dir=$2

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$owner" -- "$@"
    else
        "$@"
    fi
}

owner=$(id -un)
if [ "$(id -u)" = 0 ]; then
    if id postgres >/dev/null 2>&1; then
        owner=postgres
    else
        id flotilla-test >/dev/null 2>&1 || useradd --system --no-create-home flotilla-test
        owner=flotilla-test
    fi
fi

# Starts the server of $dir/data on port $2 and waits until it takes connections.
serve() {
    as_owner "$1/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
        -o "-p $2 -k $dir -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        >/dev/null
}

case "$command" in
start)
    bin=$(ensure_pg_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    for _ in 1 2 3; do
        port=$(free_port)
        if serve "$bin" "$port"; then
            echo "$port" >"$dir/port"
            printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$port"
            exit 0
        fi
    done
    cat "$dir/server.log" >&2
    die "the test cluster did not start"
    ;;
halt)
    bin=$(find_pg_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
resume)
    bin=$(find_pg_bin)
    serve "$bin" "$(cat "$dir/port")" || { cat "$dir/server.log" >&2; die "the test cluster did not start again"; }
    ;;
stop)
    bin=$(find_pg_bin)
    if [ -d "$dir/data" ] && [ -n "$bin" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    say "usage: $0 start|stop|halt|resume DIR"
    exit 64
    ;;
esac
