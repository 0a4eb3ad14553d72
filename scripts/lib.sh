# Shared by the scripts: messages, package installation, finding programs.
# shellcheck shell=bash

say() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get install as root, with the package lists refreshed once, and without letting
# a package's maintainer scripts start a system service (no init system here to own it;
# flotilla runs its own instances).
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "cannot install $* here (not root on Debian): run 'sudo apt-get install $*'"
    local stamp=/var/lib/apt/lists/.flotilla-updated policy=/usr/sbin/policy-rc.d added=""
    if [ ! -e "$stamp" ] || [ -z "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        touch "$stamp"
    fi
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    local status=$?
    [ -n "$added" ] && rm -f "$policy"
    [ $status = 0 ] || die "apt-get install $* failed"
}

# The nginx binary, installed on Debian if missing.
find_nginx() {
    local nginx
    nginx=$(command -v nginx || true)
    [ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx
    if [ -z "$nginx" ]; then
        say "nginx is missing; installing it"
        apt_install nginx
        nginx=$(command -v nginx || echo /usr/sbin/nginx)
    fi
    [ -x "$nginx" ] || die "nginx is missing: install it ('apt-get install nginx')"
    printf '%s\n' "$nginx"
}

# Python 3 for the example app (examples/hello), installed on Debian if missing.
find_python() {
    command -v python3 >/dev/null || { say "python3 is missing; installing it"; apt_install python3; }
    command -v python3 || die "python3 is missing: install it ('apt-get install python3')"
}

# The folder of PostgreSQL's server programs (initdb, pg_ctl, psql), the newest
# installed; PostgreSQL is installed on Debian if missing (the tests' clusters).
ensure_pg_bin() {
    local bin
    bin=$(find_pg_bin)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        say "PostgreSQL is missing; installing it"
        apt_install postgresql
        bin=$(find_pg_bin)
    fi
    [ -n "$bin" ] && [ -x "$bin/initdb" ] || die "PostgreSQL is missing: install it ('apt-get install postgresql')"
    printf '%s\n' "$bin"
}

# A TCP port on 127.0.0.1 that nothing listens on, below the ephemeral range (a port
# that a client connection holds cannot be bound, though nothing listens on it).
free_port() {
    local port low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 11000 ] 2>/dev/null || low=32768
    for _ in $(seq 1 200); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free port found"
}

# http_status URL: the status code of a GET, without curl (bash's /dev/tcp).
http_status() {
    local rest host port path line
    rest=${1#http://}
    host=${rest%%/*}
    path=/${rest#*/}
    port=${host##*:}
    host=${host%%:*}
    { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || { echo 000; return 0; }
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
    read -r -t 5 _ line _ <&3 || line=000
    exec 3<&- 3>&-
    printf '%s\n' "$line"
}

# wait_for_status URL CODE SECONDS
wait_for_status() {
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(http_status "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# What building needs beyond Rust: a C compiler (bundled SQLite and libpq) and
# OpenSSL's headers found through pkg-config (libpq's TLS to PostgreSQL).
ensure_build_deps() {
    local missing=()
    command -v cc >/dev/null || missing+=(gcc)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
    [ ${#missing[@]} = 0 ] && return 0
    say "missing for the build: ${missing[*]}"
    apt_install "${missing[@]}"
}

# The browser tests' and `make screenshots`' browser: Debian's Chromium, its driver
# (chromedriver, the same version), and the fonts the pages fall back to.
ensure_browser() {
    local missing=()
    command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v chromedriver >/dev/null || [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
    fc-list 2>/dev/null | grep -qi liberation || missing+=(fonts-liberation)
    [ ${#missing[@]} = 0 ] && return 0
    say "missing for the browser tests: ${missing[*]}"
    apt_install chromium chromium-driver fonts-liberation
}

# The newest PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin, where the
# server's and the client's packages put them), else the folder of a pg_ctl or pg_dump
# on the PATH; empty when there is none.
find_pg_bin() {
    local bin program
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    for program in pg_ctl pg_dump; do
        [ -n "$bin" ] && break
        command -v "$program" >/dev/null && bin=$(dirname "$(command -v "$program")")
    done
    printf '%s\n' "$bin"
}

# The host scripts' exits: a wrong command line (64, EX_USAGE) with the usage line, and
# a configuration that cannot work (78, EX_CONFIG) naming the variable.
usage_error() { printf 'error: %s\n%s\n' "$1" "$2" >&2; exit 64; }
config_error() { printf 'error: %s: %s\n' "$1" "$2" >&2; exit 78; }

# load_env_file: the host's env file into the environment, as the systemd units read
# it: FLOTILLA_ENV_FILE when set (set but empty: none), else /etc/flotilla/flotilla.env
# when it exists, else none (the environment as it is; with nothing set, the defaults
# of `make run`: var/). Its values win over the environment's. The file is read, never
# run: NAME=value lines, `#` comments, blank lines, a value in single or double quotes.
load_env_file() {
    local file line name value n=0
    if [ "${FLOTILLA_ENV_FILE+set}" = set ]; then
        file=$FLOTILLA_ENV_FILE
        [ -z "$file" ] && return 0
    elif [ -e /etc/flotilla/flotilla.env ]; then
        file=/etc/flotilla/flotilla.env
    else
        return 0
    fi
    [ -f "$file" ] && [ -r "$file" ] ||
        config_error FLOTILLA_ENV_FILE "cannot read $file (run as root or as the flotilla user)"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line=${line#"${line%%[![:space:]]*}"}
        case $line in '' | '#'* | ';'*) continue ;; esac
        name=${line%%=*}
        name=${name%"${name##*[![:space:]]}"}
        [[ $line == *=* && $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
            config_error FLOTILLA_ENV_FILE "$file, line $n: expected NAME=value"
        value=${line#*=}
        value=${value#"${value%%[![:space:]]*}"}
        value=${value%"${value##*[![:space:]]}"}
        case $value in
        \"*\" | \'*\') value=${value:1:${#value}-2} ;;
        esac
        export "$name=$value"
    done <"$file"
}

# Where the flotilla binaries are: FLOTILLA_BIN_DIR; else a release's bin/ beside its
# scripts/ (/opt/flotilla/current/bin); else the checkout's target/release.
flotilla_bin_dir() {
    local top
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -n "${FLOTILLA_BIN_DIR:-}" ]; then
        printf '%s\n' "$FLOTILLA_BIN_DIR"
    elif [ -d "$top/bin" ]; then
        printf '%s\n' "$top/bin"
    else
        printf '%s\n' "$top/target/release"
    fi
}

# --- The release fleet for load runs (scripts/bench-overload.sh, scripts/soak.sh) ---

# fleet_on_free_ports DIR: the fleet's processes on free ports instead of 7101-7112,
# so that a load run goes on beside another fleet (`make run`, another bench): writes
# DIR/upstreams.conf (proxy/upstreams.conf with those ports) and exports what places
# each process: FLOTILLA_<SERVICE>_LISTEN, the bus's endpoints, the keys' URL, admin's
# list of the fleet, and FLOTILLA_FLEET_UPSTREAMS for scripts/dev-fleet.sh.
fleet_on_free_ports() {
    local dir=$1 name default port sed_args=() fleet=""
    local -A defaults=([signup]=7101 [login]=7102 [profile]=7103 [admin]=7104 [worker]=7105)
    for name in signup login profile admin worker; do
        default=${defaults[$name]}
        port=$(free_port)
        export "FLOTILLA_${name^^}_LISTEN=127.0.0.1:$port"
        sed_args+=(-e "s/127\.0\.0\.1:$default\b/127.0.0.1:$port/")
        fleet+="${fleet:+ }$name=http://127.0.0.1:$port"
    done
    sed "${sed_args[@]}" "$(dirname "${BASH_SOURCE[0]}")/../proxy/upstreams.conf" >"$dir/upstreams.conf"
    export FLOTILLA_FLEET_UPSTREAMS=$dir/upstreams.conf
    export FLOTILLA_ADMIN_FLEET=$fleet
    export FLOTILLA_JWKS_URL="http://$FLOTILLA_LOGIN_LISTEN/login/.well-known/jwks.json"
    export FLOTILLA_BUS_WAKE=tcp://127.0.0.1:$(free_port)
    export FLOTILLA_BUS_EVENTS_IN=tcp://127.0.0.1:$(free_port)
    export FLOTILLA_BUS_EVENTS_OUT=tcp://127.0.0.1:$(free_port)
}

# start_load_fleet DIR PORT: the release fleet (scripts/dev-fleet.sh) on DIR, nginx on
# PORT and the services on free ports, each process logging to DIR/logs/NAME.log,
# with nginx's per-client limit on sign-ins and signups raised far above what one
# address (127.0.0.1) sends; waits until each service is ready. Sets fleet_pid.
start_load_fleet() {
    local dir=$1 port=$2 name root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    mkdir -p "$dir/logs"
    chmod 711 "$dir" # nginx's workers (nobody) pass through to the site
    fleet_on_free_ports "$dir"
    FLOTILLA_BUS_SECRET=${FLOTILLA_BUS_SECRET:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}
    export FLOTILLA_BUS_SECRET
    FLOTILLA_DATA_DIR=$dir FLOTILLA_HTTP_PORT=$port FLOTILLA_EXAMPLE_ADDR=127.0.0.1:$(free_port) \
        FLOTILLA_FLEET_LOG_DIR=$dir/logs FLOTILLA_PROXY_AUTH_RATE=10000r/s FLOTILLA_PROXY_AUTH_BURST=10000 \
        "$root/scripts/dev-fleet.sh" >"$dir/fleet.log" 2>&1 &
    fleet_pid=$!
    for name in signup login profile admin; do
        wait_for_status "http://127.0.0.1:$port/$name/ready" 200 60 ||
            { cat "$dir/fleet.log" "$dir"/logs/*.log >&2; die "the fleet did not start"; }
    done
}

# own_load_fleet NAME: start_load_fleet in a new folder (/tmp/flotilla-NAME-XXXXXX),
# nginx on a free port; sets dir, port and fleet_pid, and on exit stops the fleet and
# removes the folder.
own_load_fleet() {
    dir=$(mktemp -d "/tmp/flotilla-$1-XXXXXX")
    fleet_pid=""
    trap stop_own_load_fleet EXIT
    port=$(free_port)
    start_load_fleet "$dir" "$port"
}

stop_own_load_fleet() {
    if [ -n "$fleet_pid" ]; then
        kill -TERM "$fleet_pid" 2>/dev/null || true
        wait "$fleet_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

# fleet_rss_kb DIR NAME: the resident memory of a process of the fleet on DIR, in kB.
fleet_rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$1/run/$2.pid")/status"; }

# signed_in_account ORIGIN MAIL_DIR EMAIL PASSWORD: signs up, follows the mailed link,
# signs in; prints the access token.
signed_in_account() {
    local origin=$1 mail_dir=$2 email=$3 password=$4 token="" access
    curl -sS -o /dev/null -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$origin/signup"
    for _ in $(seq 100); do
        token=$(grep -l "^To: $email" "$mail_dir"/*.eml 2>/dev/null | head -1 | xargs -r cat |
            tr -d '\r' | sed -e ':a' -e '/=$/{N;s/=\n//;ba}' -e 's/=3D/=/g' |
            grep -o 'token=[A-Za-z0-9_-]*' | head -1 | cut -d= -f2)
        [ -n "$token" ] && break
        sleep 0.1
    done
    [ -n "$token" ] || die "no verification mail to $email in $mail_dir"
    curl -sS -o /dev/null -H 'Content-Type: application/json' -d "{\"token\":\"$token\"}" "$origin/signup/verify"
    access=$(curl -sS -H 'Content-Type: application/json' \
        -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$origin/login" |
        sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [ -n "$access" ] || die "$email cannot sign in"
    printf '%s\n' "$access"
}
