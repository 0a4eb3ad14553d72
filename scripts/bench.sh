#!/usr/bin/env bash
# `make bench`: the release fleet behind nginx, measured with wrk on loopback. Every
# figure is printed next to nginx serving a static file in the same run (the floor a
# proxied endpoint is compared with), because this machine is shared and absolute
# numbers drift. Also prints each service's resident memory, idle and after load.
#
#   BENCH_SECONDS (default 8)   BENCH_CONNECTIONS (default 64)   BENCH_THREADS (default 2)
#
# Uses the fleet's default service ports (7101-7112): stop `make run` first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

seconds=${BENCH_SECONDS:-8}
connections=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}

cargo build --release --workspace --bins
find_nginx >/dev/null
command -v wrk >/dev/null || apt_install wrk

dir=$(mktemp -d /tmp/flotilla-bench-XXXXXX)
chmod 755 "$dir" # nginx's workers (nobody) read the site from here
port=$(free_port)
fleet_pid=""
cleanup() {
    if [ -n "$fleet_pid" ]; then
        kill -TERM "$fleet_pid" 2>/dev/null || true
        wait "$fleet_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# Each process logs to its own file (access log on, as in production), not through
# make run's terminal prefixer.
mkdir -p "$dir/logs"
FLOTILLA_DATA_DIR=$dir FLOTILLA_HTTP_PORT=$port FLOTILLA_FLEET_LOG_DIR=$dir/logs \
    scripts/dev-fleet.sh >"$dir/fleet.log" 2>&1 &
fleet_pid=$!
for name in signup login profile admin; do
    wait_for_status "http://127.0.0.1:$port/$name/health" 200 60 ||
        { cat "$dir/fleet.log" "$dir"/logs/*.log >&2; die "the fleet did not start"; }
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$(cat "$dir/run/$1.pid")/status"; }
declare -A idle
for name in signup login profile admin worker; do idle[$name]=$(rss_kb "$name"); done

# measure PATH: prints "req/s p99_ms non2xx"
measure() {
    local out rps p99 bad
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port$1")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}' <<<"$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
    echo "$rps $p99 ${bad:-0}"
}

say "measuring: wrk -t$threads -c$connections -d${seconds}s per target, loopback"
read -r static1 static1_p99 static1_bad < <(measure /index.html)
declare -A rps p99 bad
for name in signup login profile admin; do
    read -r rps[$name] p99[$name] bad[$name] < <(measure "/$name/health")
done
read -r static2 static2_p99 static2_bad < <(measure /index.html)
floor=$(awk -v a="$static1" -v b="$static2" 'BEGIN {printf "%.0f", (a + b) / 2}')

echo
echo "flotilla bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$threads -c$connections -d${seconds}s"
printf '%-28s %12s %10s %8s %8s\n' target "req/s" "p99 ms" ratio non-2xx
printf '%-28s %12.0f %10s %8s %8s\n' "static /index.html (before)" "$static1" "$static1_p99" "" "$static1_bad"
printf '%-28s %12.0f %10s %8s %8s\n' "static /index.html (after)" "$static2" "$static2_p99" "" "$static2_bad"
printf '%-28s %12s %10s %8s\n' "static floor (mean)" "$floor" "" "1.00"
status=0
for name in signup login profile admin; do
    ratio=$(awk -v a="${rps[$name]}" -v f="$floor" 'BEGIN {printf "%.2f", a / f}')
    printf '%-28s %12.0f %10s %8s %8s\n' "/$name/health via nginx" "${rps[$name]}" "${p99[$name]}" "$ratio" "${bad[$name]}"
    awk -v r="$ratio" 'BEGIN {exit !(r < 0.5)}' && { say "  below the 0.5 target"; status=1; }
    [ "${bad[$name]}" = 0 ] || status=1
done
# Signup: throughput against the machine's Argon2 ceiling (cores / one hash's time,
# measured now), and /signup/health's p99 while signups flood.
hash_ms=$(cargo run --release -q -p flotilla-auth --example hash_time)
ceiling=$(awk -v c="$(nproc)" -v ms="$hash_ms" 'BEGIN {printf "%.1f", c * 1000 / ms}')
wrk -t1 -c4 -d"$((seconds - 1))s" --latency "http://127.0.0.1:$port/signup/health" >"$dir/health-during.txt" &
health_pid=$!
flood=$(wrk -t2 -c16 -d"${seconds}s" -s scripts/bench-signup.lua "http://127.0.0.1:$port/signup")
wait "$health_pid"
total=$(awk '/requests in/ {print $1}' <<<"$flood")
elapsed=$(awk '/requests in/ {v=$4; sub(/,$/,"",v); if (v ~ /ms$/) {sub(/ms$/,"",v); v/=1000} else {sub(/s$/,"",v)}; print v}' <<<"$flood")
refused=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$flood")
signups=$(awk -v t="$total" -v r="${refused:-0}" -v e="$elapsed" 'BEGIN {printf "%.1f", (t - r) / e}')
signup_ratio=$(awk -v a="$signups" -v c="$ceiling" 'BEGIN {printf "%.2f", a / c}')
health_p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}' "$dir/health-during.txt")
echo
echo "signup (wrk -t2 -c16, a new address per request)"
printf '%-44s %10s\n' "one Argon2id hash (median of 21)" "$hash_ms ms"
printf '%-44s %10s\n' "Argon2 ceiling ($(nproc) cores / one hash)" "$ceiling/s"
printf '%-44s %10s %8s\n' "signups accepted through nginx" "$signups/s" "$signup_ratio"
printf '%-44s %10s\n' "signups refused (503 while the pool is full)" "${refused:-0}"
printf '%-44s %10s\n' "/signup/health p99 during the flood" "$health_p99 ms"
awk -v r="$signup_ratio" 'BEGIN {exit !(r < 0.8)}' && { say "  signup below 0.8 of the Argon2 ceiling"; status=1; }
awk -v p="$health_p99" 'BEGIN {exit !(p > 20)}' && { say "  health p99 over 20 ms during the flood"; status=1; }

echo
printf '%-10s %14s %16s\n' service "idle RSS MB" "after load MB"
for name in signup login profile admin worker; do
    printf '%-10s %14.1f %16.1f\n' "$name" "$(awk -v k="${idle[$name]}" 'BEGIN {print k / 1024}')" \
        "$(awk -v k="$(rss_kb "$name")" 'BEGIN {print k / 1024}')"
    [ "${idle[$name]}" -le $((15 * 1024)) ] || { say "  $name idle RSS over 15 MB"; status=1; }
done
exit $status
