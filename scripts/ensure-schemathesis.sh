#!/usr/bin/env bash
# schemathesis, the fuzzer that the fleet test `fuzz` and `make fuzz` run against every
# service's OpenAPI document: installed from PyPI into a virtual environment of its own,
# at exactly the versions scripts/schemathesis.txt pins, with Debian's python3 (and
# python3-venv, installed with apt as root when missing). Prints the path of the
# `schemathesis` program; does nothing more when it is already there.
#
# The environment is FLOTILLA_SCHEMATHESIS_VENV when set, else
# $XDG_CACHE_HOME/flotilla/schemathesis-<version>-<hash of the pins> (~/.cache when
# XDG_CACHE_HOME is unset): shared by every checkout of the machine, made anew when the
# pins change. Two runs at once (the test on both databases) take turns on a lock.
#
# `--check`: installs nothing; prints the path and succeeds only when it is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

pins=$root/scripts/schemathesis.txt
version=$(sed -n 's/^schemathesis==//p' "$pins")
[ -n "$version" ] || die "$pins pins no schemathesis version"
hash=$(grep -v '^#' "$pins" | sha256sum | cut -c1-12)
venv=${FLOTILLA_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/schemathesis-$version-$hash}
program=$venv/bin/schemathesis
# `.installed` is written last: a venv without it is a broken install, made again.
installed() { [ -x "$program" ] && [ -e "$venv/.installed" ]; }
if [ "${1:-}" = --check ]; then
    installed && printf '%s\n' "$program"
    exit
fi

if ! installed; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
fi
if ! installed; then
    python=/usr/bin/python3
    [ -x "$python" ] || python=$(find_python)
    # Debian's python3 makes environments only with python3-venv (ensurepip).
    "$python" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
    say "installing schemathesis $version into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2 || die "python3 -m venv $venv failed"
    if ! "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
        --requirement "$pins" >&2; then
        rm -rf "$venv"
        die "pip could not install schemathesis $version from PyPI (see above)"
    fi
    "$program" --version >&2 || die "$program does not run"
    touch "$venv/.installed"
fi
printf '%s\n' "$program"
