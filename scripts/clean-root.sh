#!/usr/bin/env bash
# A clean Debian 12 server's root file system, for testing a release where nothing but
# the base system, nginx and an ssh server is installed:
#   scripts/clean-root.sh DIR
# makes DIR with `debootstrap --variant=minbase --include=nginx-light,openssh-server
# bookworm` (openssh-server brings libssl3, as on any server reached over ssh), and
# prints DIR. A DIR made before with the same packages is reused as it is; a half-made
# one (interrupted: no stamp) is removed and made again. Installs debootstrap with apt
# when missing (root on Debian). Needs root (debootstrap makes device nodes and chroots).
#
#   FLOTILLA_DEBIAN_MIRROR  (default: the first bookworm mirror in /etc/apt/sources.list
#                           and /etc/apt/sources.list.d/, else http://deb.debian.org/debian)
#                           where debootstrap fetches the packages
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

suite=bookworm
packages="nginx-light,openssh-server"
if [ $# != 1 ] || [ -z "$1" ] || [[ $1 == -* ]]; then
    echo "usage: $0 DIR" >&2
    exit 64
fi
[ "$(id -u)" = 0 ] || die "making a root file system needs root (debootstrap makes device nodes and chroots)"

# The first mirror of $suite in apt's sources, one-line (.list) or deb822 (.sources).
apt_mirror() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$file" ] || continue
        awk -v suite="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$file"
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -r "$file" ] || continue
        awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; deb = 0; has = 0
                for (j = 1; j <= NF; j++) {
                    n = split($j, w, /[ \t]+/)
                    if (w[1] == "URIs:") uri = w[2]
                    if (w[1] == "Types:") for (k = 2; k <= n; k++) if (w[k] == "deb") deb = 1
                    if (w[1] == "Suites:") for (k = 2; k <= n; k++) if (w[k] == suite) has = 1
                }
                if (uri != "" && deb && has) { print uri; exit }
            }' "$file"
    done
}

# Unmounts whatever an interrupted debootstrap left mounted under $1 (its /proc, /sys),
# deepest first, so that removing the folder never reaches into the host's.
unmount_under() {
    awk -v dir="$1" '$2 == dir || index($2, dir "/") == 1 { print $2 }' /proc/self/mounts |
        sort -r | while read -r mount; do umount -l "$mount"; done
}

mkdir -p "$(dirname "$1")"
dir=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
stamp="$dir/.flotilla-clean-root"
want="suite=$suite packages=$packages"
exec 9>"$dir.lock"
flock 9 # one maker at a time; a second caller waits and then reuses its work
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    printf '%s\n' "$dir"
    exit 0
fi

mirror=${FLOTILLA_DEBIAN_MIRROR:-$(apt_mirror | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
[[ $mirror =~ ^(https?|file)://[^[:space:]]+$ ]] ||
    { echo "error: FLOTILLA_DEBIAN_MIRROR='$mirror': expected an http(s):// or file:// URL of a Debian mirror" >&2; exit 78; }
command -v debootstrap >/dev/null || apt_install debootstrap

partial="$dir.partial"
for old in "$dir" "$partial"; do
    if [ -e "$old" ]; then
        say "removing the incomplete or outdated root $old"
        unmount_under "$old"
        rm -rf --one-file-system "$old"
    fi
done
say "debootstrap $suite ($packages) from $mirror into $dir: a few minutes, once"
started=$SECONDS
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$partial" "$mirror" >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    unmount_under "$partial"
    die "debootstrap failed (whole log: $dir.log)"
fi
unmount_under "$partial"
for program in usr/sbin/nginx usr/sbin/sshd usr/bin/ldd usr/bin/sha256sum; do
    [ -x "$partial/$program" ] || die "debootstrap finished but /$program is missing in $partial"
done
# The stamp last, then the move: a folder under the final name is always complete.
printf '%s\n' "$want" >"$partial/.flotilla-clean-root"
mv "$partial" "$dir"
say "clean root made in $((SECONDS - started)) s"
printf '%s\n' "$dir"
