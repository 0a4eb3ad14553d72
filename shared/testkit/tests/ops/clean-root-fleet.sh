#!/usr/bin/env bash
# Fixture of release.rs: a release installed and run on a clean Debian 12 server, as a
# sysadmin would, inside the root file system scripts/clean-root.sh made.
#   clean-root-fleet.sh ROOT WORK TARBALL
# Run as the first process of new mount and PID namespaces (`unshare --mount --pid
# --fork --kill-child`): everything it mounts and starts goes with it. ROOT stays as it
# is: the server is an overlay on it whose changes go to WORK. The network is the
# host's, so the test reaches nginx and the services on 127.0.0.1.
#
#   FLOTILLA_TEST_HTTP_PORT                  nginx's port
#   FLOTILLA_TEST_{SIGNUP,LOGIN,PROFILE}_PORT  the services' ports
#   FLOTILLA_TEST_BUS_{WAKE,IN,OUT}_PORT     the bus endpoints (no hub runs: the
#                                            services do without it, as with the bus down)
# Inside the root it runs again as `clean-root-fleet.sh inside TARBALL`.
set -euo pipefail

if [ "${1:-}" != inside ]; then
    if [ $# != 3 ]; then
        echo "usage: $0 ROOT WORK TARBALL" >&2
        exit 64
    fi
    root=$1 work=$2 tarball=$3
    server=$work/server
    mkdir -p "$work/upper" "$work/overlay-work" "$server"
    mount -t overlay overlay \
        -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/overlay-work" "$server"
    mount -t proc proc "$server/proc"
    mount --rbind /dev "$server/dev"
    mount -t tmpfs tmpfs "$server/tmp"
    cp "$tarball" "$0" "$server/tmp/"
    mapfile -t test_env < <(env | grep '^FLOTILLA_TEST_')
    exec chroot "$server" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "${test_env[@]}" \
        /bin/bash "/tmp/${0##*/}" inside "/tmp/${tarball##*/}"
fi

# --- Inside the clean root: the production layout (docs/operations.md, "Placement and deploy").
tarball=$2
step() { printf '==> %s\n' "$*" >&2; }

step "the system: $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -n1 | awk '{print $NF}')"
useradd --system --home-dir /var/lib/flotilla --shell /usr/sbin/nologin flotilla
install -d -m 0755 /opt/flotilla/releases/.unpacking
tar -xzf "$tarball" -C /opt/flotilla/releases/.unpacking
version=$(sed -n 's/^version=//p' /opt/flotilla/releases/.unpacking/flotilla-*/MANIFEST)
mv "/opt/flotilla/releases/.unpacking/flotilla-$version" "/opt/flotilla/releases/$version"
rmdir /opt/flotilla/releases/.unpacking
ln -sfn "/opt/flotilla/releases/$version" /opt/flotilla/current
cd /opt/flotilla/current

step "sha256sum -c SHA256SUMS"
sha256sum --quiet -c SHA256SUMS
step "ldd: every library of every binary"
for binary in bin/*; do
    libraries=$(ldd "$binary")
    if grep -q 'not found' <<<"$libraries"; then
        echo "$binary: a library is missing on a clean Debian 12:" >&2
        echo "$libraries" >&2
        exit 1
    fi
done
echo "ldd: every library found"

install -d -m 0711 -o flotilla -g flotilla /var/lib/flotilla
install -d -m 0750 /etc/flotilla
install -m 0640 -g flotilla systemd/flotilla.env.example /etc/flotilla/flotilla.env
cat >>/etc/flotilla/flotilla.env <<EOF
# This test's server: its own ports, plain http on loopback.
FLOTILLA_PUBLIC_URL=http://127.0.0.1:$FLOTILLA_TEST_HTTP_PORT
FLOTILLA_SIGNUP_LISTEN=127.0.0.1:$FLOTILLA_TEST_SIGNUP_PORT
FLOTILLA_LOGIN_LISTEN=127.0.0.1:$FLOTILLA_TEST_LOGIN_PORT
FLOTILLA_PROFILE_LISTEN=127.0.0.1:$FLOTILLA_TEST_PROFILE_PORT
FLOTILLA_JWKS_URL=http://127.0.0.1:$FLOTILLA_TEST_LOGIN_PORT/login/.well-known/jwks.json
FLOTILLA_BUS_WAKE=tcp://127.0.0.1:$FLOTILLA_TEST_BUS_WAKE_PORT
FLOTILLA_BUS_EVENTS_IN=tcp://127.0.0.1:$FLOTILLA_TEST_BUS_IN_PORT
FLOTILLA_BUS_EVENTS_OUT=tcp://127.0.0.1:$FLOTILLA_TEST_BUS_OUT_PORT
FLOTILLA_HTTP_WORKERS=1
EOF

# What a unit does: the env file, user flotilla, /var/lib/flotilla as working folder.
as_flotilla() {
    (
        set -a
        # shellcheck source=/dev/null
        . /etc/flotilla/flotilla.env
        set +a
        cd /var/lib/flotilla
        exec setpriv --reuid=flotilla --regid=flotilla --init-groups "$@"
    )
}
step "flotilla-worker migrate"
as_flotilla /opt/flotilla/current/bin/flotilla-worker migrate
step "flotilla-login keys generate"
as_flotilla /opt/flotilla/current/bin/flotilla-login keys generate
for service in login signup profile; do
    step "flotilla-$service serve"
    as_flotilla "/opt/flotilla/current/bin/flotilla-$service" serve &
done

step "nginx with the release's proxy/"
install -d /etc/nginx/flotilla
sed -e "s/127\.0\.0\.1:7101\([ ;]\)/127.0.0.1:$FLOTILLA_TEST_SIGNUP_PORT\1/" \
    -e "s/127\.0\.0\.1:7102\([ ;]\)/127.0.0.1:$FLOTILLA_TEST_LOGIN_PORT\1/" \
    -e "s/127\.0\.0\.1:7103\([ ;]\)/127.0.0.1:$FLOTILLA_TEST_PROFILE_PORT\1/" \
    proxy/upstreams.conf >/etc/nginx/flotilla/upstreams.conf
scripts/render-proxy.sh /run/flotilla-nginx "127.0.0.1:$FLOTILLA_TEST_HTTP_PORT" \
    /var/lib/flotilla/www /etc/nginx/flotilla/upstreams.conf
nginx -t -q -p /run/flotilla-nginx -c /run/flotilla-nginx/nginx.conf -e stderr
nginx -p /run/flotilla-nginx -c /run/flotilla-nginx/nginx.conf -e stderr &
step "the fleet is starting"

# Until the test ends it (SIGKILL to the namespace): any process ending is a failure.
set +e
wait -n
status=$?
echo "a process of the fleet exited with status $status" >&2
exit 1
