# The checks of one host, for scripts/doctor: sourced by scripts/flotilla-host (whose
# helpers it uses: fetch, keys_digest, env_args, as_flotilla, is_running), whose
# `check` verb runs them (over ssh for `scripts/doctor PLACEMENT`, or here for
# `scripts/doctor` alone). One line per check: `ok    what: detail`, or
# `FAIL  what: detail; hint: what to do`; `skip  what: why` when it cannot apply.
#
#   host_check [--env] [--facts]
#     --env    the fleet described by this process's environment (`make run`, the
#              tests) instead of the installed one (/etc/flotilla, /opt/flotilla/current)
#     --facts  also `@keys DIGEST` and `@jwks DIGEST SOURCE` lines, which
#              flotilla-ops doctor compares between hosts
#
# What runs here: /etc/flotilla/placement (`NAME SERVICE ADDRESS:PORT` lines, `pages`,
# `nginx`), its settings from /etc/flotilla/flotilla.env, its binaries in
# /opt/flotilla/current/bin, run as the flotilla user; with --env every service at
# FLOTILLA_<SERVICE>_LISTEN (default 127.0.0.1:7101-7105), nginx and pages too, the
# binaries in FLOTILLA_BIN_DIR (default target/release) run as this user.
#
# Variables read (from the environment, in both modes):
#   FLOTILLA_DOCTOR_MIN_FREE_MB  (default 1024) the disk check fails under this many
#                                megabytes free in the data folder's file system (or
#                                under 5% of it)
# and with --env, as `make run` reads them: FLOTILLA_DATA_DIR (default var/ of the
# checkout), FLOTILLA_BIN_DIR, FLOTILLA_HTTP_PORT (8080), FLOTILLA_<SERVICE>_LISTEN,
# FLOTILLA_BUS_WAKE, FLOTILLA_BUS_EVENTS_IN, FLOTILLA_BUS_EVENTS_OUT,
# FLOTILLA_JWKS_URL, FLOTILLA_JWKS_FILE, FLOTILLA_KEYS_DIR, FLOTILLA_PUBLIC_URL,
# FLOTILLA_PAGES_REBUILD_SECS, FLOTILLA_PAGES_OUT, DATABASE_URL (through the binaries), and
#   FLOTILLA_DOCTOR_NGINX_CONF   (default $FLOTILLA_DATA_DIR/nginx/nginx.conf, where
#                                make run renders it) nginx's main file, for nginx -t
# Installed, the same settings come from /etc/flotilla/flotilla.env.
# shellcheck shell=bash
# shellcheck disable=SC2154 # etc, opt, data, logs and fetched_*: the agent's

# How long the queue's oldest due job may have waited: a worker polls every 2 s, so
# five minutes means no worker is taking jobs.
check_queue_wait_secs=300
check_services=(signup login profile admin worker)

check_say() { printf '%-4s  %s\n' "$1" "$2"; }
check_ok() { check_say ok "$*"; }
check_fail() { check_say FAIL "$1; hint: $2"; }
check_skip() { check_say skip "$*"; }

# reach HOST:PORT: a TCP connection within 3 s; the reason on failure.
reach() {
    local host=${1%:*} port=${1##*:} out
    host=${host#[}
    host=${host%]}
    out=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>&1) && return 0
    [ -z "$out" ] && out="no answer within 3 s"
    out=$(printf '%s\n' "$out" | head -n 1)
    out=${out##*: }
    printf '%s\n' "${out,,}"
    return 1
}

# A JSON string field of a small body, e.g. json_field message "$body".
json_field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -n 1; }

# The message of a flotilla binary's error (its log line without the time and target).
error_message() { grep -m1 -E 'ERROR|error' | sed -e 's/^\[[^]]*\] //' -e 's/^error: //'; }

# An address to reach a listening socket at: a wildcard address means this host.
probe_address() {
    local socket=$1
    case $socket in
    0.0.0.0:* | \*:*) printf '127.0.0.1:%s\n' "${socket##*:}" ;;
    \[::\]:*) printf '[::1]:%s\n' "${socket##*:}" ;;
    *) printf '%s\n' "$socket" ;;
    esac
}

# A JWKS's digest covers its keys' ids and public halves, not the JSON's layout (a
# key folder's, keys_digest, its files).
jwks_digest() { grep -oE '"(kid|x)":"[^"]*"' | sort | sha256sum | cut -c1-16; }

# --- the view of this host: what runs here, its settings, how to run its binaries

# setting NAME DEFAULT: a variable as this host's processes see it.
setting() {
    local value
    if [ -n "$check_env" ]; then
        value=${!1:-}
    else
        value=$(env_args "$etc/flotilla.env" | sed -n "s/^$1=//p" | tail -n 1)
    fi
    printf '%s\n' "${value:-$2}"
}

# run_bin NAME ARGS...: a flotilla binary with this host's settings.
run_bin() {
    local name=$1
    shift
    if [ -n "$check_env" ]; then
        [ -x "$check_bin/$name" ] || { echo "error: $check_bin/$name is missing (FLOTILLA_BIN_DIR)" >&2; return 127; }
        timeout 30 "$check_bin/$name" "$@"
    else
        as_flotilla "$etc/flotilla.env" -- timeout 30 "$opt/current/bin/$name" "$@"
    fi
}

# nginx_run ARGS...: nginx on this host's configuration.
nginx_run() {
    local nginx
    nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }) || return 127
    if [ -n "$check_env" ]; then
        "$nginx" -p "$(dirname "$check_nginx_conf")" -c "$check_nginx_conf" -e stderr "$@"
    else
        "$nginx" "$@"
    fi
}

hint_instance() {
    if [ -n "$check_env" ]; then
        echo "is the fleet running (make run)? its terminal says why $1 stopped"
    elif systemd; then
        echo "systemctl status flotilla@$1; journalctl -u flotilla@$1 -n 50"
    else
        echo "see $logs/$1.log; scripts/deploy starts it again"
    fi
}

hint_nginx() {
    if [ -n "$check_env" ]; then
        echo "is the fleet running (make run)? nginx's lines in its terminal say why"
    elif systemd; then
        echo "systemctl status nginx; journalctl -u nginx -n 50"
    else
        echo "nginx -t, then start it (scripts/deploy does)"
    fi
}

# --- the checks: each prints its line(s) and returns 0

check_disk() {
    local min=$1 dir=$check_data size avail inodes ifree pct problems=()
    if [ ! -d "$dir" ]; then
        check_fail "disk: the data folder $dir does not exist" \
            "FLOTILLA_DATA_DIR names it; scripts/deploy (or make run) makes it"
        return 0
    fi
    read -r _ size _ avail _ < <(df -Pk "$dir" | tail -n 1)
    read -r _ inodes _ ifree _ < <(df -Pi "$dir" | tail -n 1)
    pct=$((size > 0 ? avail * 100 / size : 0))
    [ $((avail / 1024)) -lt "$min" ] && problems+=("under FLOTILLA_DOCTOR_MIN_FREE_MB=$min MB")
    [ $((avail * 100)) -lt $((size * 5)) ] && problems+=("under 5%")
    # Some file systems (btrfs) count no inodes.
    if [[ $inodes =~ ^[0-9]+$ ]] && [ "$inodes" -gt 0 ] && [ $((ifree * 100)) -lt $((inodes * 5)) ]; then
        problems+=("$ifree inodes free, under 5%")
    fi
    local what="disk: $dir has $((avail / 1024)) MB free ($pct%)"
    if [ ${#problems[@]} = 0 ]; then
        check_ok "$what"
    else
        local IFS=,
        local where="old releases in /opt/flotilla/releases, logs, mail"
        [ -n "$check_env" ] && where="logs, mail, old builds"
        check_fail "$what: ${problems[*]}" \
            "free space on that file system ($where) or grow it; a full disk stops the database, the mail files and the static site"
    fi
}

check_nginx_config() {
    local out rc
    out=$(nginx_run -t -q 2>&1)
    rc=$?
    if [ $rc = 127 ]; then
        check_fail "nginx: not installed here" "apt-get install nginx"
    elif [ $rc = 0 ]; then
        check_ok "nginx: the configuration test passes (nginx -t)"
    else
        out=$(printf '%s\n' "$out" | grep -m1 -E 'emerg|alert|crit|error' || printf '%s\n' "$out" | head -n 1)
        # Without nginx's time and process: "[emerg] cannot load certificate …".
        out=$(printf '%s\n' "$out" | sed -E 's|^nginx: ||; s|^[0-9/]+ [0-9:]+ (\[[a-z]+\]) [0-9#]+: |\1 |')
        check_fail "nginx: the configuration test fails: $out" \
            "fix the file it names, then nginx -t; scripts/deploy renders flotilla's part from proxy/ and the placement"
    fi
}

check_nginx_answers() {
    fetch "http://$check_nginx/"
    if [ "$fetched_status" = 200 ]; then
        check_ok "nginx: answers on $check_nginx (/ 200)"
    elif [ "$fetched_status" = 000 ]; then
        check_fail "nginx: no answer on $check_nginx ($fetched_error)" "$(hint_nginx)"
    else
        check_fail "nginx: / on $check_nginx answered $fetched_status" \
            "the static site may be missing: flotilla-pages build (scripts/deploy runs it)"
    fi
}

# check_through SERVICE: its /health and /ready through nginx.
check_through() {
    local svc=$1 health ready message
    fetch "http://$check_nginx/$svc/health"
    health=$fetched_status
    fetch "http://$check_nginx/$svc/ready"
    ready=$fetched_status
    message=$(json_field message "$fetched_body")
    if [ "$health" = 200 ] && [ "$ready" = 200 ]; then
        check_ok "through nginx /$svc: health 200, ready 200"
    elif [ "$health" = 000 ]; then
        check_fail "through nginx /$svc: no answer from nginx" "$(hint_nginx)"
    elif [ "$health" = 502 ] || [ "$health" = 504 ]; then
        check_fail "through nginx /$svc: health $health, ready $ready: nginx reaches no $svc instance" \
            "see the $svc instance lines; nginx's upstreams name where it looks"
    else
        check_fail "through nginx /$svc: health $health, ready $ready${message:+: $message}" \
            "see the $svc instance lines"
    fi
}

check_certificate() {
    local url files file end left days fails=() oks=()
    url=$(setting FLOTILLA_PUBLIC_URL http://127.0.0.1:8080)
    if [[ $url != https://* ]]; then
        check_ok "certificate: FLOTILLA_PUBLIC_URL is http, nothing to expire"
        return 0
    fi
    # Every ssl_certificate of the whole configuration (nginx -T), quotes removed.
    files=$(nginx_run -T 2>/dev/null | grep -v '^[[:space:]]*#' |
        grep -oE '(^|[[:space:];{])ssl_certificate[[:space:]]+[^;]+' |
        sed -E 's/^.*ssl_certificate[[:space:]]+//' | tr -d "\"'" | sort -u)
    if [ -z "$files" ]; then
        check_skip "certificate: FLOTILLA_PUBLIC_URL is https, but nginx here serves none (TLS ends in front of it): check its expiry there"
        return 0
    fi
    if ! command -v openssl >/dev/null; then
        check_fail "certificate: openssl is missing, so $files cannot be read" "apt-get install openssl"
        return 0
    fi
    while IFS= read -r file; do
        end=$(openssl x509 -noout -enddate -in "$file" 2>/dev/null | sed 's/^notAfter=//')
        if [ -z "$end" ]; then
            fails+=("$file cannot be read")
            continue
        fi
        left=$(($(date -d "$end" +%s) - $(date +%s)))
        days=$((left / 86400))
        if [ "$left" -lt $((14 * 86400)) ]; then
            fails+=("$file expires in $days days ($end)")
        else
            oks+=("$file: $days days left")
        fi
    done <<<"$files"
    if [ ${#fails[@]} = 0 ]; then
        local IFS=';'
        check_ok "certificate: ${oks[*]}"
    else
        local IFS=';'
        check_fail "certificate: ${fails[*]}" "renew it (certbot renew, or your CA), then nginx -t and reload nginx"
    fi
}

# check_instance NAME SERVICE ADDRESS:PORT: its /health and /ready, directly.
check_instance() {
    local name=$1 svc=$2 socket version message
    socket=$(probe_address "$3")
    fetch "http://$socket/$svc/health"
    if [ "$fetched_status" = 000 ]; then
        local state=""
        if [ -z "$check_env" ] && ! is_running "$name"; then state=", not running"; fi
        check_fail "instance $name ($socket): no answer ($fetched_error$state)" "$(hint_instance "$name")"
        return 0
    fi
    local health=$fetched_status
    version=$(json_field version "$fetched_body")
    fetch "http://$socket/$svc/ready"
    message=$(json_field message "$fetched_body")
    if [ "$health" = 200 ] && [ "$fetched_status" = 200 ]; then
        check_ok "instance $name ($socket): health 200, ready 200${version:+ (version $version)}"
    else
        check_fail "instance $name ($socket): health $health, ready $fetched_status${message:+: $message}" \
            "its log says why ($(hint_instance "$name"))"
    fi
}

# Whether status read the queue and the pages: the schema is this release's, or a
# newer release's that it still serves on.
readable_schema() { [ "$1" = current ] || [ "$1" = newer ]; }

# The database through `flotilla-worker status`: reached from here, and, where a
# worker runs, the schema and the queue, and where the page generator runs, its last
# build.
check_database() {
    local schema_here=$1 pages_here=$2 out err rc
    err=$(mktemp)
    out=$(run_bin flotilla-worker status 2>"$err")
    rc=$?
    if [ $rc != 0 ]; then
        local message
        message=$(error_message <"$err")
        [ -n "$message" ] || message=$(head -n 1 "$err")
        rm -f "$err"
        check_fail "database: ${message:-flotilla-worker status failed ($rc)}" \
            "is the database server running and reachable from this host? DATABASE_URL ($( [ -n "$check_env" ] && echo "the environment" || echo "$etc/flotilla.env")) names it"
        return 0
    fi
    rm -f "$err"
    get() { printf '%s\n' "$out" | sed -n "s/^$1=//p"; }
    check_ok "database: $(get database) answers ($(get backend))"
    if [ -n "$schema_here" ]; then
        case $(get schema) in
        current) check_ok "schema: current ($(get migrations_applied) of $(get migrations_known) migrations)" ;;
        newer) check_ok "schema: expanded by a newer release ($(get schema_unknown)), which this one still serves on" ;;
        behind) check_fail "schema: migrations pending ($(get schema_pending))" \
            "flotilla-worker migrate (scripts/deploy runs it once per deploy)" ;;
        *) check_fail "schema: the database has migrations this release does not know ($(get schema_unknown))" \
            "a newer release migrated it: deploy that release here" ;;
        esac
        if readable_schema "$(get schema)"; then
            local due oldest wait
            due=$(get jobs_due) oldest=$(get jobs_oldest_due_secs)
            wait=""
            [ "$oldest" != none ] && wait=", the oldest waiting ${oldest} s"
            if [ "$oldest" != none ] && [ "$oldest" -gt "$check_queue_wait_secs" ]; then
                check_fail "queue: $due jobs due$wait" \
                    "no worker is taking jobs: see the worker instance lines and its log"
            else
                check_ok "queue: $due due$wait, $(get jobs_scheduled) waiting to retry, $(get jobs_running) running"
            fi
            if [ "$(get jobs_dead_24h)" -gt 0 ]; then
                check_fail "dead jobs: $(get jobs_dead_24h) died in the last 24 h ($(get jobs_dead) in all)" \
                    "the console's jobs page (/admin/jobs) says why; retry them there once the cause is fixed"
            else
                check_ok "dead jobs: none in the last 24 h ($(get jobs_dead) older, kept 30 days)"
            fi
        fi
    fi
    if [ -n "$pages_here" ] && readable_schema "$(get schema)"; then
        local age rebuild limit
        age=$(get pages_last_build_age_secs)
        rebuild=$(setting FLOTILLA_PAGES_REBUILD_SECS 86400)
        [[ $rebuild =~ ^[0-9]+$ ]] || rebuild=86400
        limit=$((2 * rebuild))
        if [ "$age" = none ]; then
            check_fail "pages: no full build recorded" "flotilla-pages build (scripts/deploy runs it)"
        elif [ "$age" -gt "$limit" ]; then
            check_fail "pages: the last full build was $age s ago ($(get pages_last_build) on $(get pages_last_build_host)), more than twice FLOTILLA_PAGES_REBUILD_SECS ($limit s)" \
                "is the page generator running? $( [ -n "$check_env" ] && echo "make run starts flotilla-pages watch" || echo "flotilla-pages-watch and flotilla-pages.timer")"
        else
            check_ok "pages: the last full build was $age s ago ($(get pages_last_build_host))"
        fi
    fi
}

# The site this host writes: FLOTILLA_PAGES_OUT a symlink to its current build, and
# <out>.status.json beside it, which flotilla-pages rewrites after each full build and
# each update of `watch`: the last full build's age (at most twice
# FLOTILLA_PAGES_REBUILD_SECS, as for the one in page_builds, which any host may have
# made), and how long the last build and update took.
check_site() {
    local out status json finished took pages age rebuild limit update=""
    out=$(setting FLOTILLA_PAGES_OUT "$check_data/www")
    status=$out.status.json
    if [ ! -f "$status" ]; then
        check_fail "site: no status file ($status)" "flotilla-pages build writes it (scripts/deploy runs it)"
        return 0
    fi
    json=$(tr -d '\n' <"$status")
    # site_field SECTION FIELD: a string or number of one section of the status.
    site_field() {
        printf '%s' "$json" | grep -o "\"$1\": *{[^}]*}" |
            sed -n -E "s/.*\"$2\": *\"?([^\", }]*).*/\1/p" | head -n 1
    }
    finished=$(site_field last_build finished_at)
    took=$(site_field last_build duration_ms)
    pages=$(site_field last_build pages)
    if [ -z "$finished" ] || ! finished=$(date -u -d "$finished" +%s 2>/dev/null); then
        check_fail "site: $status records no full build" "flotilla-pages build (scripts/deploy runs it)"
        return 0
    fi
    if [ ! -L "$out" ]; then
        check_fail "site: $out is not a symlink to a build" "flotilla-pages build makes it one"
        return 0
    fi
    age=$(($(date -u +%s) - finished))
    rebuild=$(setting FLOTILLA_PAGES_REBUILD_SECS 86400)
    [[ $rebuild =~ ^[0-9]+$ ]] || rebuild=86400
    limit=$((2 * rebuild))
    local at
    at=$(site_field last_update at)
    if [ -n "$at" ] && at=$(date -u -d "$at" +%s 2>/dev/null); then
        update="; the last update $(($(date -u +%s) - at)) s ago ($(site_field last_update changed) accounts in $(site_field last_update duration_ms) ms)"
    else
        update="; no update since $( [ -n "$check_env" ] && echo "make run started" || echo "the watcher started")"
    fi
    if [ "$age" -gt "$limit" ]; then
        check_fail "site: the last full build here was $age s ago, more than twice FLOTILLA_PAGES_REBUILD_SECS ($limit s)" \
            "is the page generator running? $( [ -n "$check_env" ] && echo "make run starts flotilla-pages watch" || echo "flotilla-pages-watch and flotilla-pages.timer")"
    else
        check_ok "site: the last full build here was $age s ago ($pages pages in $took ms)$update"
    fi
}

check_keys() {
    local facts=$1 dir out err rc count
    dir=$(setting FLOTILLA_KEYS_DIR "$check_data/keys")
    err=$(mktemp)
    out=$(run_bin flotilla-login keys list 2>"$err")
    rc=$?
    if [ $rc != 0 ]; then
        local message
        message=$(error_message <"$err")
        rm -f "$err"
        check_fail "keys: ${message:-flotilla-login keys list failed ($rc)}" \
            "remove or replace the file it names: keys are made by flotilla-login keys generate, and scripts/deploy copies them to every login host"
        return 0
    fi
    rm -f "$err"
    count=$(printf '%s\n' "$out" | grep -c . || true)
    if [ "$count" = 0 ]; then
        check_fail "keys: no signing key in $dir" "flotilla-login keys generate (scripts/deploy makes the first)"
    else
        check_ok "keys: $count signing key(s) in $dir, the newest $(printf '%s\n' "$out" | tail -n 1 | cut -f1)"
    fi
    [ -n "$facts" ] && printf '@keys %s\n' "$(keys_digest "$dir")"
    return 0
}

# check_jwks FACTS SOURCE...: the keys each login instance here publishes, and what
# this host's services are told to fetch (FLOTILLA_JWKS_URL, or FLOTILLA_JWKS_FILE),
# all the same.
check_jwks() {
    local facts=$1
    shift
    local source digest digests=() problems=() seen=()
    for source in "$@"; do
        [[ " ${seen[*]} " == *" $source "* ]] && continue
        seen+=("$source")
        case $source in
        http://*)
            fetch "$source"
            if [ "$fetched_status" != 200 ]; then
                problems+=("$source: ${fetched_error:-$fetched_status}")
                continue
            fi
            digest=$(printf '%s' "$fetched_body" | jwks_digest)
            ;;
        https://*)
            check_skip "jwks: $source is https: not compared here (profile checks its certificate and says so in its log)"
            continue
            ;;
        *)
            if [ ! -r "$source" ]; then
                problems+=("$source: cannot be read")
                continue
            fi
            digest=$(jwks_digest <"$source")
            ;;
        esac
        digests+=("$digest $source")
        [ -n "$facts" ] && printf '@jwks %s %s\n' "$digest" "$source"
    done
    local distinct
    distinct=$(printf '%s\n' "${digests[@]%% *}" | sort -u | grep -c . || true)
    if [ ${#problems[@]} -gt 0 ]; then
        local IFS=';'
        check_fail "jwks: no JWKS from ${problems[*]}" "see the login instance lines; FLOTILLA_JWKS_URL names where the services fetch it"
    elif [ "$distinct" -gt 1 ]; then
        local IFS=';'
        check_fail "jwks: the keys differ: ${digests[*]}" \
            "right after flotilla-login keys generate that lasts FLOTILLA_KEYS_RELOAD_SECS (30 s): run doctor again; otherwise the login hosts' key folders differ (scripts/deploy copies the first one's)"
    elif [ ${#digests[@]} -gt 0 ]; then
        check_ok "jwks: the same keys from ${#digests[@]} source(s): ${seen[*]}"
    fi
    return 0
}

check_bus() {
    local name endpoint socket why problems=() oks=()
    for name in WAKE:7110 EVENTS_IN:7111 EVENTS_OUT:7112; do
        endpoint=$(setting "FLOTILLA_BUS_${name%:*}" "tcp://127.0.0.1:${name#*:}")
        socket=$(probe_address "${endpoint#tcp://}")
        if why=$(reach "$socket"); then
            oks+=("$socket")
        else
            problems+=("FLOTILLA_BUS_${name%:*} $endpoint: $why")
        fi
    done
    if [ ${#problems[@]} = 0 ]; then
        check_ok "bus: the hub answers at ${oks[*]}"
    else
        local IFS=';'
        check_fail "bus: no answer from ${problems[*]}" \
            "the first worker hosts the bus: is it running, and does no firewall stand between the hosts?"
    fi
}

# --- running them

host_check() {
    # Every check prints its own verdict: none may end the others.
    set +e +o pipefail
    check_env="" check_facts=""
    while [ $# -gt 0 ]; do
        case $1 in
        --env) check_env=1 ;;
        --facts) check_facts=1 ;;
        *) echo "usage: flotilla-host check [--env] [--facts]" >&2; exit 64 ;;
        esac
        shift
    done
    local min=${FLOTILLA_DOCTOR_MIN_FREE_MB:-1024}
    if ! [[ $min =~ ^[0-9]{1,9}$ ]]; then
        echo "error: FLOTILLA_DOCTOR_MIN_FREE_MB='$min': expected megabytes, e.g. 1024" >&2
        exit 78
    fi
    # What runs here: instance lines, and whether pages, nginx and a worker do.
    local instances=() pages="" nginx="" worker="" line name svc socket
    if [ -n "$check_env" ]; then
        local checkout
        checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
        export FLOTILLA_DATA_DIR=${FLOTILLA_DATA_DIR:-$checkout/var}
        check_data=$FLOTILLA_DATA_DIR
        check_bin=${FLOTILLA_BIN_DIR:-$checkout/target/release}
        check_nginx_conf=${FLOTILLA_DOCTOR_NGINX_CONF:-$check_data/nginx/nginx.conf}
        check_nginx=127.0.0.1:${FLOTILLA_HTTP_PORT:-8080}
        local port=7101 var
        for svc in "${check_services[@]}"; do
            var=FLOTILLA_${svc^^}_LISTEN
            instances+=("$svc $svc ${!var:-127.0.0.1:$port}")
            port=$((port + 1))
        done
        pages=1 nginx=1 worker=1
    else
        [ "$(id -u)" = 0 ] || { echo "error: the installed fleet's check runs as root (sudo): it reads $etc and runs the binaries as flotilla" >&2; exit 77; }
        if [ ! -f "$etc/placement" ]; then
            check_fail "host: nothing is deployed here ($etc/placement is missing)" "scripts/deploy PLACEMENT"
            exit 1
        fi
        while read -r name svc socket; do
            case $name in
            '' | '#'*) ;;
            pages) pages=1 ;;
            nginx) nginx=1 ;;
            *)
                instances+=("$name $svc $socket")
                [ "$svc" = worker ] && worker=1
                ;;
            esac
        done <"$etc/placement"
        check_data=$(setting FLOTILLA_DATA_DIR "$data")
        local listen
        listen=$(sed -n 's/^[[:space:]]*listen[[:space:]]\{1,\}\([^ ;]*\).*/\1/p' /etc/nginx/flotilla/server.conf 2>/dev/null | head -n 1)
        [[ $listen =~ ^[0-9]+$ ]] && listen=127.0.0.1:$listen
        check_nginx=$(probe_address "${listen:-127.0.0.1:80}")
    fi

    local dir
    dir=$(mktemp -d)
    # Each check in the background, its lines in a file of its own; printed in order.
    local n=0
    spawn() {
        n=$((n + 1))
        "$@" >"$dir/$(printf '%03d' "$n")" 2>&1 &
    }
    spawn check_disk "$min"
    if [ -n "$nginx" ]; then
        spawn check_nginx_config
        spawn check_nginx_answers
        for svc in signup login profile admin; do spawn check_through "$svc"; done
        spawn check_certificate
    fi
    local logins=() jwks_readers=""
    for line in "${instances[@]}"; do
        read -r name svc socket <<<"$line"
        spawn check_instance "$name" "$svc" "$socket"
        [ "$svc" = login ] && logins+=("http://$(probe_address "$socket")/login/.well-known/jwks.json")
        case $svc in profile | admin) jwks_readers=1 ;; esac
    done
    if [ ${#instances[@]} -gt 0 ] || [ -n "$pages" ]; then
        spawn check_database "$worker" "$pages"
        [ -n "$pages" ] && spawn check_site
        spawn check_bus
    fi
    if [ ${#logins[@]} -gt 0 ]; then
        spawn check_keys "$check_facts"
    fi
    if [ ${#logins[@]} -gt 0 ] || [ -n "$jwks_readers" ]; then
        local seen=("${logins[@]}") file url
        if [ -n "$jwks_readers" ]; then
            file=$(setting FLOTILLA_JWKS_FILE "")
            url=$(setting FLOTILLA_JWKS_URL "http://127.0.0.1:7102/login/.well-known/jwks.json")
            if [ -n "$file" ]; then seen+=("$file"); else seen+=("$url"); fi
        fi
        spawn check_jwks "$check_facts" "${seen[@]}"
    fi
    wait
    cat "$dir"/*
    local failed checks
    failed=$(cat "$dir"/* | grep -c '^FAIL' || true)
    checks=$(cat "$dir"/* | grep -cE '^(ok|FAIL|skip) ' || true)
    rm -rf "$dir"
    # flotilla-ops doctor counts the lines of every host itself.
    if [ -z "$check_facts" ]; then
        if [ "$failed" = 0 ]; then echo "all $checks checks ok"; else echo "$failed of $checks checks FAILED"; fi
    fi
    [ "$failed" = 0 ]
}
