#!/usr/bin/env bash
# `make soak`: the release fleet under a steady mix of people for SOAK_MINUTES, to find
# what a short bench does not: errors that come with time, latency that creeps, memory
# that grows. flotilla-load's journeys (the test kit's) start at SOAK_RATE a second,
# well below what the fleet sustains: a new person signs up, follows the mailed link
# (the fleet writes its mails to files) and verifies; a returning one (half of the
# journeys, once there are people) does not; then each signs in, reads the profile,
# edits it, refreshes the session, reads the profile again, and one in three signs
# out. Prints the answers, p50 and p99 per route, errors by route and status, and each
# process's resident memory when the fleet is ready, after a first minute of journeys
# (the start the end is compared with) and at the end.
#
# Targets: no error (an answer other than the expected one, or none within 10 s);
# every journey finished; each process's memory at the end at most SOAK_RSS_RATIO
# (default 1.25) times what it was after the first minute (caches and pools fill in
# that minute; growth after it is what a leak looks like).
#
#   SOAK_MINUTES (default 10)   SOAK_RATE (default 2 journeys a second)
#   SOAK_RSS_RATIO (default 1.25)
#
# Starts its own fleet, with its services on free ports (scripts/lib.sh's
# start_load_fleet). Exits 1 when a target is missed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
cd "$root"

minutes=${SOAK_MINUTES:-10}
rate=${SOAK_RATE:-2}
rss_ratio=${SOAK_RSS_RATIO:-1.25}
[[ $minutes =~ ^[0-9]+$ ]] && [ "$minutes" -ge 2 ] || die "SOAK_MINUTES=$minutes: a whole number of minutes, 2 or more"

cargo build --release -q --workspace --bins
find_nginx >/dev/null

own_load_fleet soak
processes=(signup login profile admin worker pages)
declare -A idle first last
for name in "${processes[@]}"; do idle[$name]=$(fleet_rss_kb "$dir" "$name"); done
say "soak: $rate journeys a second for $minutes minutes through http://127.0.0.1:$port"
target/release/flotilla-load journeys --url "http://127.0.0.1:$port" --mail-dir "$dir/mail" \
    --rate "$rate" --seconds "$((minutes * 60))" >"$dir/journeys.txt" 2>"$dir/journeys.err" &
journeys_pid=$!
sleep 60
for name in "${processes[@]}"; do first[$name]=$(fleet_rss_kb "$dir" "$name"); done
journeys_status=0
wait "$journeys_pid" || journeys_status=$?
for name in "${processes[@]}"; do last[$name]=$(fleet_rss_kb "$dir" "$name"); done

echo
echo "soak: $minutes minutes, $rate journeys a second (flotilla-load journeys)"
grep -v '^journeys=' "$dir/journeys.txt" || true
totals=$(grep '^journeys=' "$dir/journeys.txt" || true)
echo "$totals"
sed 's/^/  /' "$dir/journeys.err" >&2
status=0
[ "$journeys_status" = 0 ] || { say "  journeys failed or did not finish (flotilla-load exited $journeys_status)"; status=1; }

echo
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
printf '%-10s %10s %14s %12s %14s\n' process "ready MB" "after 1 min MB" "at end MB" "end / 1 min"
for name in "${processes[@]}"; do
    ratio=$(awk -v a="${last[$name]}" -v b="${first[$name]}" 'BEGIN {printf "%.2f", a / b}')
    printf '%-10s %10s %14s %12s %14s\n' "$name" "$(mb "${idle[$name]}")" "$(mb "${first[$name]}")" \
        "$(mb "${last[$name]}")" "$ratio"
    awk -v r="$ratio" -v max="$rss_ratio" 'BEGIN {exit !(r > max)}' &&
        { say "  $name's memory grew over $rss_ratio times"; status=1; }
done
exit $status
