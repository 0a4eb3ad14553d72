#!/usr/bin/env bash
# Renders the nginx configuration from proxy/ for one place:
#   scripts/render-proxy.sh OUT_DIR LISTEN WWW_ROOT [UPSTREAMS_FILE]
# writes OUT_DIR/server.conf (the flotilla server block) and OUT_DIR/nginx.conf (a main
# file for running nginx in the foreground with `-p OUT_DIR -c OUT_DIR/nginx.conf`).
# UPSTREAMS_FILE defaults to proxy/upstreams.conf, the placement file.
#
# and OUT_DIR/flotilla/: the snippets of proxy/flotilla/ (the door for the site's other
# apps, and the includes that protect their locations) and apps/, the apps' locations.
#
#   FLOTILLA_EXAMPLE_ADDR      (default empty: no example)  where the example app
#                              (examples/hello/app.py) listens: its locations under
#                              /hello/ are rendered into OUT_DIR/flotilla/apps/
#                              (make run and the tests; never a production server)
#   FLOTILLA_PROXY_AUTH_RATE   (default 30r/m)  attempts per client (an IPv4 address or
#                              an IPv6 /64) at POST /login, POST /signup, POST /login/forgot,
#                              POST /login/confirm and profile's password routes:
#                              N r/s or N r/m
#   FLOTILLA_PROXY_AUTH_BURST  (default 10)     attempts allowed at once above the rate
#   FLOTILLA_PROXY_ACCESS_LOG  (default OUT_DIR/access.log)  the access log (no query
#                              strings: they carry the emails' tokens)
#   FLOTILLA_PROXY_REAL_IP_FROM (default empty: nginx is the edge)  the load balancers
#                              in front of nginx, addresses or CIDRs separated by spaces
#                              or commas: the client's address is then read from their
#                              X-Forwarded-For (realip), for the logs, the services and
#                              the limits
#   FLOTILLA_PROXY_ADMIN_ALLOW (default empty: no restriction)  the client networks
#                              that may reach /admin at all, addresses or CIDRs
#                              separated by spaces or commas (e.g. 10.0.0.0/8,
#                              2001:db8::/32): others get 403 from nginx. The
#                              address is the client's as realip resolved it
#                              (FLOTILLA_PROXY_REAL_IP_FROM)
#
# Why 30r/m with a burst of 10: a person at a form needs a few attempts (a typo, then
# "forgot password"), and an office or a mobile network shares one address among many
# people, so 10 at once and then one every 2 s seldom gets in a person's way. A script
# gets 30 guesses a minute per address instead of thousands, and one address can cost
# the Argon2 hashing pool half a hash a second once its burst is spent. Slowing guesses
# at one account from many addresses is the login service's job, not nginx's. The
# tests and `make bench` raise both: they drive hundreds of attempts a second from
# 127.0.0.1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then
    echo "usage: $0 OUT_DIR LISTEN WWW_ROOT [UPSTREAMS_FILE]" >&2
    exit 64
fi
# A bad value is a configuration error (78, as the services exit), naming the variable.
auth_rate=${FLOTILLA_PROXY_AUTH_RATE:-30r/m}
auth_burst=${FLOTILLA_PROXY_AUTH_BURST:-10}
if ! [[ $auth_rate =~ ^[0-9]{1,9}r/[sm]$ ]] || [[ $auth_rate =~ ^0+r ]]; then
    echo "error: FLOTILLA_PROXY_AUTH_RATE='$auth_rate': expected N r/s or N r/m with N at least 1, e.g. 30r/m or 5r/s" >&2
    exit 78
fi
if ! [[ $auth_burst =~ ^[0-9]{1,9}$ ]]; then
    echo "error: FLOTILLA_PROXY_AUTH_BURST='$auth_burst': expected a whole number of requests, e.g. 10" >&2
    exit 78
fi
real_ip=""
real_ip_from=${FLOTILLA_PROXY_REAL_IP_FROM:-}
for from in ${real_ip_from//,/ }; do
    if ! [[ $from =~ ^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$ ]]; then
        echo "error: FLOTILLA_PROXY_REAL_IP_FROM: '$from' is not an address or a CIDR, e.g. 10.0.0.5 or 2001:db8::/32" >&2
        exit 78
    fi
    real_ip+="    set_real_ip_from $from;\\n"
done
if [ -n "$real_ip" ]; then
    real_ip_line="s|^@REAL_IP@\$|${real_ip}    real_ip_header X-Forwarded-For;\\n    real_ip_recursive on;|"
else
    real_ip_line='/^@REAL_IP@$/d'
fi
admin_allow=""
admin_allow_from=${FLOTILLA_PROXY_ADMIN_ALLOW:-}
for from in ${admin_allow_from//,/ }; do
    if ! [[ $from =~ ^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$ ]]; then
        echo "error: FLOTILLA_PROXY_ADMIN_ALLOW: '$from' is not an address or a CIDR, e.g. 10.0.0.0/8 or 2001:db8::/32" >&2
        exit 78
    fi
    admin_allow+="        allow $from;\\n"
done
if [ -n "$admin_allow" ]; then
    admin_allow_line="s|^@ADMIN_ALLOW@\$|${admin_allow}        deny all;|"
else
    admin_allow_line='/^@ADMIN_ALLOW@$/d'
fi
# Retry-After on a refusal: the seconds until the rate admits one more attempt.
per_unit=$((10#${auth_rate%%r/*}))
case $auth_rate in
*r/m) retry_after=$(((60 + per_unit - 1) / per_unit)) ;;
*) retry_after=1 ;;
esac
mkdir -p "$1/tmp"
out=$(cd "$1" && pwd)
listen=$2
# An absolute WWW_ROOT is taken as it is: scripts/deploy renders here for another
# host, whose folder this machine need not have. A relative one is made and resolved.
case $3 in
/*) www=$3 ;;
*) www=$(mkdir -p "$3" && cd "$3" && pwd) ;;
esac
upstreams=$(realpath "${4:-$root/proxy/upstreams.conf}")
# Escape what sed's replacement treats specially.
esc() { printf '%s' "$1" | sed -e 's/[&|\\]/\\&/g'; }
sed -e "s|@LISTEN@|$(esc "$listen")|g" -e "s|@WWW_ROOT@|$(esc "$www")|g" \
    -e "s|@AUTH_RATE@|$auth_rate|g" -e "s|@AUTH_BURST@|$((10#$auth_burst))|g" \
    -e "s|@AUTH_RETRY_AFTER@|$retry_after|g" -e "$real_ip_line" -e "$admin_allow_line" \
    -e "s|@ACCESS_LOG@|$(esc "${FLOTILLA_PROXY_ACCESS_LOG:-$out/access.log}")|g" \
    "$root/proxy/server.conf.in" >"$out/server.conf"
mkdir -p "$out/flotilla/apps"
cp "$root"/proxy/flotilla/*.conf "$out/flotilla/"
example=${FLOTILLA_EXAMPLE_ADDR:-}
if [ -n "$example" ]; then
    if ! [[ $example =~ ^[^[:space:]/|]+:[0-9]{1,5}$ ]]; then
        echo "error: FLOTILLA_EXAMPLE_ADDR='$example': expected HOST:PORT, e.g. 127.0.0.1:7190" >&2
        exit 78
    fi
    sed -e "s|@EXAMPLE_ADDR@|$(esc "$example")|g" -e "s|@EXAMPLE_DIR@|$(esc "$root/examples/hello")|g" \
        "$root/examples/hello/nginx.conf" >"$out/flotilla/apps/hello.conf"
else
    rm -f "$out/flotilla/apps/hello.conf"
fi
sed -e "s|@PREFIX@|$(esc "$out")|g" -e "s|@UPSTREAMS@|$(esc "$upstreams")|g" \
    "$root/proxy/nginx.conf.in" >"$out/nginx.conf"
