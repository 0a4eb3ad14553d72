#!/usr/bin/env bash
# The whole fleet in the foreground: `make run`. Migrates the database, builds the
# static site, starts the five services, the page watcher and nginx, prefixes each log line with its
# process, and stops everything on Ctrl-C, SIGTERM, or when any process dies.
#
#   FLOTILLA_HTTP_PORT   nginx's port (default 8080)
#   FLOTILLA_BIN_DIR     where the binaries are (default target/release)
#   FLOTILLA_DATA_DIR    runtime data (default var/ in the checkout)
#   FLOTILLA_FLEET_LOG_DIR  when set, each process logs to DIR/NAME.log instead of the
#                        terminal (make bench: the prefixing sed costs more CPU than a
#                        health request does)
#   FLOTILLA_FLEET_UPSTREAMS  the placement file nginx is given (default
#                        proxy/upstreams.conf); with fleet_on_free_ports (scripts/lib.sh)
#                        a bench or soak runs beside another fleet
#   FLOTILLA_EXAMPLE_ADDR  where the example app listens (default 127.0.0.1:7190); nginx
#                        serves it at /hello/
#   FLOTILLA_LOG         default here info,mail_link=debug: the mails' links are shown
# plus every FLOTILLA_* variable of the services, passed through.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

port=${FLOTILLA_HTTP_PORT:-8080}
bin=${FLOTILLA_BIN_DIR:-$root/target/release}
export FLOTILLA_DATA_DIR=${FLOTILLA_DATA_DIR:-$root/var}
# The data folder holds secrets (database, keys, bus secret): others may pass through
# to the static site, never list or read (the services refuse a folder open to them).
# The checkout's own var/, made before that rule, is brought in line here.
mkdir -p -m 711 "$FLOTILLA_DATA_DIR"
if [ "$FLOTILLA_DATA_DIR" = "$root/var" ]; then
    chmod go-rw "$root/var"
    for file in "$root"/var/flotilla.db*; do [ -f "$file" ] && chmod go-rwx "$file"; done
    [ -d "$root/var/mail" ] && chmod 700 "$root/var/mail"
fi
FLOTILLA_DATA_DIR=$(cd "$FLOTILLA_DATA_DIR" && pwd)
run_dir=$FLOTILLA_DATA_DIR/run
services=(worker signup login profile admin)

for name in "${services[@]}" pages; do
    [ -x "$bin/flotilla-$name" ] || die "$bin/flotilla-$name is missing: run 'make run' (it builds them)"
done
nginx=$(find_nginx) || exit 1
python=$(find_python) || exit 1
export FLOTILLA_EXAMPLE_ADDR=${FLOTILLA_EXAMPLE_ADDR:-127.0.0.1:7190}
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
    die "port $port is taken (another 'make run'?): stop it or set FLOTILLA_HTTP_PORT"

"$bin/flotilla-worker" migrate || die "migration failed"
"$bin/flotilla-pages" build || die "building the static site failed"
"$root/scripts/render-proxy.sh" "$FLOTILLA_DATA_DIR/nginx" "127.0.0.1:$port" \
    "${FLOTILLA_PAGES_OUT:-$FLOTILLA_DATA_DIR/www}" ${FLOTILLA_FLEET_UPSTREAMS:+"$FLOTILLA_FLEET_UPSTREAMS"} ||
    die "rendering the nginx configuration failed"
"$nginx" -t -q -p "$FLOTILLA_DATA_DIR/nginx" -c "$FLOTILLA_DATA_DIR/nginx/nginx.conf" -e stderr ||
    die "the nginx configuration is invalid"

# Migrated above: the services only check the schema.
export FLOTILLA_AUTO_MIGRATE=false
# The file transport's links (signup, reset, change of address) on the terminal, for the
# developer: logged at debug under their own target, never at info.
export FLOTILLA_LOG=${FLOTILLA_LOG:-info,mail_link=debug}
mkdir -p "$run_dir"
rm -f "$run_dir"/*.pid
pids=()

# start NAME COMMAND...: runs COMMAND with its output prefixed by NAME. The prefixer
# ignores SIGINT, so that on Ctrl-C it outlives its process and no last line is lost.
start() {
    local name=$1
    shift
    if [ -n "${FLOTILLA_FLEET_LOG_DIR:-}" ]; then
        "$@" >>"$FLOTILLA_FLEET_LOG_DIR/$name.log" 2>&1 &
    else
        "$@" > >(trap '' INT TERM; exec sed -u "s/^/$(printf '%-8s' "$name") | /") 2>&1 &
    fi
    pids+=($!)
    echo $! >"$run_dir/$name.pid"
}

stopping=""
stop_all() {
    [ -n "$stopping" ] && return
    stopping=1
    trap '' INT TERM
    say "stopping the fleet"
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 150); do
        alive=""
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    wait 2>/dev/null
    rm -f "$run_dir"/*.pid
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

for name in "${services[@]}"; do
    start "$name" "$bin/flotilla-$name"
done
start pages "$bin/flotilla-pages" watch
start hello "$python" -u "$root/examples/hello/app.py" "$FLOTILLA_EXAMPLE_ADDR"
start nginx "$nginx" -p "$FLOTILLA_DATA_DIR/nginx" -c "$FLOTILLA_DATA_DIR/nginx/nginx.conf" -e stderr

ready=1
for path in /signup/health /login/health /profile/health /admin/health /hello/welcome; do
    wait_for_status "http://127.0.0.1:$port$path" 200 30 || { ready=""; break; }
done
if [ -n "$ready" ]; then
    say ""
    say "flotilla is up on http://127.0.0.1:$port  (Ctrl-C stops everything)"
    say "  /  /signup  /login  /profile  /admin   data: $FLOTILLA_DATA_DIR"
    say "  /hello/  an app of the site that knows who is signed in (examples/hello)"
    say "  to make yourself admin: sign up, follow the link shown here, then run"
    say "    FLOTILLA_DATA_DIR=$FLOTILLA_DATA_DIR $bin/flotilla-admin promote YOUR-EMAIL"
    say ""
else
    say "the fleet did not become healthy within 30 s; stopping"
    exit 1
fi

# Until a signal, or until any process exits: a fleet with a dead member stops whole.
wait -n "${pids[@]}"
# Ctrl-C reaches the whole process group: a service may exit just before our own trap
# runs. Give the trap its turn before calling this a crash.
sleep 0.5
say "a process of the fleet exited; stopping the others"
exit 1
