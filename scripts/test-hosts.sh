#!/usr/bin/env bash
# Hosts on one machine, for the multi-host tests: each "host" is a network namespace on
# a bridge of its own run, with its own mounts, process ids, host name and a real sshd.
#
#   scripts/test-hosts.sh check
#       exit 0 when this machine can make hosts; else exit 69 and say why (not root,
#       a tool missing, namespaces or bridges refused by the kernel)
#   scripts/test-hosts.sh start DIR NAME...
#       one host per NAME (a lower-case letter, then letters, digits or dashes; at most
#       50 hosts), on a free private /24 (10.100.0.0-10.254.255.0, 172.16-31.x.0):
#       the deploying side (this namespace) is .1 on the bridge, the hosts .2, .3, … in
#       the order given. Prints "NAME ADDRESS" per host. Writes DIR/ssh_config, so that
#       `ssh -F DIR/ssh_config NAME command` (or root@NAME, or root@ADDRESS) runs a
#       command there as root; DIR/hosts ("NAME ADDRESS" lines); DIR/network (the /24).
#       A failed start undoes what it made. Installs openssh-server when sshd is missing.
#   scripts/test-hosts.sh stop DIR
#       kills every process of every host (whatever the namespace holds: `ip netns
#       pids`), removes the namespaces, the bridge and the mounts (they live in the
#       hosts' mount namespaces); works after a failed start, and twice. Leaves DIR's
#       files for the caller to read and remove.
#   scripts/test-hosts.sh exec DIR NAME COMMAND...
#       runs COMMAND in the host's namespaces (as its sshd's sessions run), standard
#       input and output passed through
#   scripts/test-hosts.sh pids DIR NAME
#       the process ids (as this namespace sees them) of every process in the host
#   scripts/test-hosts.sh postgres DIR NAME USER DATABASE
#       starts a PostgreSQL cluster in host NAME listening on its address, port 5432;
#       makes role USER with the password read from the first line of standard input,
#       and DATABASE owned by it; every host of the /24 (and the deploying side) may
#       connect with that password (scram-sha-256). Prints postgres://USER@ADDRESS:5432/DATABASE
#       (no password). Installs PostgreSQL when missing.
#
# Each host's files, readable from outside under DIR/NAME/:
#   etc/                 its /etc: a copy of this machine's, with its own hostname, hosts,
#                        sshd configuration and host key
#   opt-flotilla/        /opt/flotilla          var-lib-flotilla/    /var/lib/flotilla
#   var-lib-nginx/       /var/lib/nginx         var-lib-postgresql/  /var/lib/postgresql
#   var-log/             /var/log (sshd.log; postgresql/flotilla.log on a PostgreSQL host)
#   run/                 /run                   tmp/                 /tmp
# Everything else (/usr, /root, /home, /srv, /var/lib/dpkg…) is this machine's, shared:
# install packages before starting hosts. Process ids are private (a host's `ps` and
# `pkill` see its own processes only); a process that an ssh session starts with setsid
# outlives the session. /opt/flotilla and /var/lib/flotilla are made (empty) on this
# machine when missing, to mount the hosts' folders on. `ip netns exec` would bind files
# of /etc/netns/NAME over /etc: none exist for these names, and each host mounts its own
# /etc over that anyway.
#
# Reads no environment variable.
set -euo pipefail
script=$(readlink -f "$0")
root=$(cd "$(dirname "$script")/.." && pwd)
. "$root/scripts/lib.sh"

usage() {
    say "usage: $0 check | start DIR NAME... | stop DIR | exec DIR NAME COMMAND... | pids DIR NAME | postgres DIR NAME USER DATABASE"
    exit 64
}

# The folders a host has of its own: "folder-under-DIR/NAME mount-point".
private_folders=(
    "opt-flotilla /opt/flotilla"
    "var-lib-flotilla /var/lib/flotilla"
    "var-lib-nginx /var/lib/nginx"
    "var-lib-postgresql /var/lib/postgresql"
    "var-log /var/log"
    "run /run"
    "tmp /tmp"
)

# Why this machine cannot make hosts, or nothing.
unavailable() {
    [ "$(id -u)" = 0 ] || { echo "hosts need root (network namespaces, bridges, mounts)"; return; }
    local tool
    for tool in ip unshare nsenter setsid ssh ssh-keygen runuser; do
        command -v "$tool" >/dev/null || { echo "$tool is missing (iproute2, util-linux, openssh-client)"; return; }
    done
    unshare --net --mount --pid --fork --uts --ipc true 2>/dev/null ||
        { echo "the kernel refuses new namespaces here (a container without CAP_SYS_ADMIN?)"; return; }
    unshare --net sh -c 'ip link add b0 type bridge && ip link add v0 type veth peer name v1' 2>/dev/null ||
        { echo "the kernel refuses bridges or veth pairs (modules bridge and veth)"; return; }
    [ -x /usr/sbin/sshd ] || command -v apt-get >/dev/null ||
        { echo "sshd is missing and apt-get is not here to install openssh-server"; return; }
}

# A free private /24 as "A.B.C" (its first three bytes), claimed under /run so that two
# runs never take the same one: a network that overlaps none of this machine's routes.
ip_number() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    echo $(((a << 24) + (b << 16) + (c << 8) + d))
}
claim_network() {
    local used=() route net len candidate start mask
    while read -r route; do
        [[ $route =~ ^([0-9.]+)(/([0-9]+))?$ ]] || continue
        net=${BASH_REMATCH[1]}
        len=${BASH_REMATCH[3]:-32}
        [ "$len" -ge 8 ] || continue # a default route overlaps everything and nothing
        used+=("$(ip_number "$net") $len")
    done < <({ ip -4 route show table all | awk '{print $1}'; ip -4 -o addr show | awk '{print $4}'; } 2>/dev/null)
    mkdir -p /run/flotilla-test-hosts
    for _ in $(seq 1 500); do
        if [ $((RANDOM % 4)) = 0 ]; then
            candidate="172.$((16 + RANDOM % 16)).$((RANDOM % 256))"
        else
            candidate="10.$((100 + RANDOM % 155)).$((RANDOM % 256))"
        fi
        start=$(ip_number "$candidate.0")
        local clash=""
        for route in "${used[@]}"; do
            net=${route% *}
            len=${route#* }
            # Two networks overlap when the shorter prefix contains the other's start.
            [ "$len" -lt 24 ] && mask=$len || mask=24
            mask=$(((0xffffffff << (32 - mask)) & 0xffffffff))
            [ $((net & mask)) = $((start & mask)) ] && clash=1 && break
        done
        [ -z "$clash" ] || continue
        if mkdir "/run/flotilla-test-hosts/$candidate.0" 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    die "no free private /24 found"
}

state_get() { sed -n "s/^$2 //p" "$1/state" 2>/dev/null || true; }

host_init_pid() {
    local pid
    pid=$(cat "$1/$2/init.pid" 2>/dev/null) || die "no host '$2' under $1"
    [ -d "/proc/$pid" ] || die "host '$2' is not running (its sshd, process $pid, is gone)"
    echo "$pid"
}

# Runs a command in a host's namespaces.
in_host() {
    local dir=$1 name=$2 pid
    shift 2
    pid=$(host_init_pid "$dir" "$name")
    nsenter --target "$pid" --net --mount --pid --uts --ipc -- "$@"
}

stop() {
    local dir=$1 ns pids link deadline
    [ -f "$dir/state" ] || return 0
    for ns in $(state_get "$dir" netns); do
        deadline=$((SECONDS + 20))
        while pids=$(ip netns pids "$ns" 2>/dev/null) && [ -n "$pids" ]; do
            [ $SECONDS -lt $deadline ] || die "processes of $ns do not die: $pids"
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
            sleep 0.05
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in $(state_get "$dir" link) $(state_get "$dir" bridge); do
        ip link del "$link" 2>/dev/null || true
    done
    for net in $(state_get "$dir" claim); do
        rmdir "/run/flotilla-test-hosts/$net" 2>/dev/null || true
    done
    rm -f "$dir/state"
}

# The host's own side, run as process 1 of its pid namespace inside its network
# namespace: mount its folders, then become its sshd.
host_main() {
    local dir=$1 name=$2 entry folder target last=()
    hostname "$name"
    mount --bind "$dir/$name/etc" /etc
    for entry in "${private_folders[@]}"; do
        folder=${entry% *}
        target=${entry#* }
        # The mount that hides DIR itself goes last, when nothing more is read from DIR.
        if [[ $dir/ == "$target"/* ]]; then
            last=("$dir/$name/$folder" "$target")
            continue
        fi
        mount --bind "$dir/$name/$folder" "$target"
    done
    [ ${#last[@]} = 0 ] || mount --bind "${last[@]}"
    exec /usr/sbin/sshd -D -f /etc/ssh/sshd_config -E /var/log/sshd.log
}

# DIR/NAME/ as the host will see it: folders, and its /etc with its own identity.
prepare_host() {
    local dir=$1 name=$2 address=$3 host=$1/$2 entry
    rm -rf "$host" # a previous run's, stopped
    mkdir -p "$host"
    for entry in "${private_folders[@]}"; do
        mkdir -p "$host/${entry% *}"
    done
    chmod 1777 "$host/tmp"
    chmod 0711 "$host/var-lib-flotilla"
    mkdir -p "$host/run/sshd" "$host/run/lock" "$host/var-log/nginx"
    chmod 0755 "$host/run/sshd"
    cp -a /etc "$host/etc"
    local etc=$host/etc
    echo "$name" >"$etc/hostname"
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$etc/machine-id" && echo >>"$etc/machine-id"
    {
        printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
        cat "$dir/hosts.tmp"
    } >"$etc/hosts"
    # sshd without PAM refuses a locked account ('!'): root logs in by key only.
    sed -i 's/^root:![^:]*:/root:*:/' "$etc/shadow"
    rm -f "$etc"/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$etc/ssh/ssh_host_ed25519_key"
    cp "$dir/id_ed25519.pub" "$etc/ssh/flotilla_authorized_keys"
    chmod 0644 "$etc/ssh/flotilla_authorized_keys"
    cat >"$etc/ssh/sshd_config" <<EOF
# Host $name of scripts/test-hosts.sh: root by the key of $dir/id_ed25519 only.
ListenAddress $address:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/flotilla_authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
EOF
    printf '%s,%s %s\n' "$name" "$address" "$(cut -d' ' -f1,2 "$etc/ssh/ssh_host_ed25519_key.pub")" >"$host/known_hosts.part"
    cat >"$host/ssh_config.part" <<EOF
Host $name $address
    HostName $address
    User root
    IdentityFile $dir/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $dir/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
    ServerAliveInterval 5
    ServerAliveCountMax 6
    LogLevel ERROR

EOF
}

# Waits until a host's sshd runs a command, and the host reaches the first host.
host_ready() {
    local dir=$1 name=$2 address=$3 first=$4 first_address=$5 bridge=$6 deadline=$((SECONDS + 15))
    until (exec 3<>"/dev/tcp/$address/22") 2>/dev/null; do
        [ $SECONDS -lt $deadline ] ||
            { cat "$dir/$name/host.log" "$dir/$name/var-log/sshd.log" >&2 2>/dev/null; die "sshd of $name does not answer on $address:22"; }
        sleep 0.05
    done
    [ "$(ssh -F "$dir/ssh_config" "$name" hostname </dev/null)" = "$name" ] ||
        { cat "$dir/$name/var-log/sshd.log" >&2 2>/dev/null; die "ssh to $name did not run a command there"; }
    [ "$name" = "$first" ] && return 0
    in_host "$dir" "$name" timeout 5 bash -c "exec 3<>/dev/tcp/$first_address/22" ||
        die "$name does not reach $first on the bridge $bridge: a firewall filtering bridged traffic (net.bridge.bridge-nf-call-iptables=1 with a FORWARD policy of DROP)?"
}

start() {
    local dir=$1
    shift
    local names=("$@") name seen=" "
    if [ ${#names[@]} -lt 1 ] || [ ${#names[@]} -gt 50 ]; then usage; fi
    for name in "${names[@]}"; do
        [[ $name =~ ^[a-z][a-z0-9-]{0,19}$ ]] ||
            { say "error: host name '$name': a lower-case letter, then letters, digits or dashes (20 at most)"; usage; }
        [[ $seen == *" $name "* ]] && { say "error: host '$name' given twice"; usage; }
        seen+="$name "
    done
    [[ $dir =~ ^[A-Za-z0-9_./-]+$ ]] || { say "error: DIR '$dir': letters, digits and ._/- only (it goes into ssh_config)"; usage; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ ! -e "$dir/state" ] || { say "error: $dir already has hosts: '$0 stop $dir' first"; exit 64; }
    local reason
    reason=$(unavailable)
    [ -z "$reason" ] || { say "error: cannot make hosts here: $reason"; exit 69; }
    if [ ! -x /usr/sbin/sshd ]; then
        say "sshd is missing; installing openssh-server"
        apt_install openssh-server
    fi
    local point
    for point in /opt/flotilla /var/lib/flotilla; do
        [ -d "$point" ] || { mkdir -p "$point" && say "made $point (empty) to mount the hosts' own on"; }
    done

    touch "$dir/state"
    trap 'status=$?; [ $status = 0 ] || { say "start failed: undoing it"; stop "$dir"; }; exit $status' EXIT
    local id net
    id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    while ip link show "flb$id" >/dev/null 2>&1; do
        id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
    done
    net=$(claim_network)
    echo "claim $net.0" >>"$dir/state"
    echo "bridge flb$id" >>"$dir/state"
    ip link add "flb$id" type bridge
    ip addr add "$net.1/24" dev "flb$id"
    ip link set "flb$id" up
    echo "$net.0/24" >"$dir/network"

    rm -f "$dir/ssh_config" "$dir/known_hosts" "$dir/hosts" "$dir/hosts.tmp" "$dir"/id_ed25519*
    ssh-keygen -q -t ed25519 -N '' -C "flotilla-test-hosts" -f "$dir/id_ed25519"
    local i=0
    for name in "${names[@]}"; do
        printf '%s\t%s\n' "$net.$((i + 2))" "$name" >>"$dir/hosts.tmp"
        printf '%s %s\n' "$name" "$net.$((i + 2))" >>"$dir/hosts"
        i=$((i + 1))
    done

    # The hosts' folders at once: copying /etc is most of the time a start takes.
    local jobs=() job failed=""
    while read -r name address; do
        prepare_host "$dir" "$name" "$address" &
        jobs+=($!)
    done <"$dir/hosts"
    for job in "${jobs[@]}"; do wait "$job" || failed=1; done
    [ -z "$failed" ] || die "could not prepare the hosts' folders"
    rm -f "$dir/hosts.tmp"
    for name in "${names[@]}"; do
        cat "$dir/$name/ssh_config.part" >>"$dir/ssh_config"
        cat "$dir/$name/known_hosts.part" >>"$dir/known_hosts"
        rm -f "$dir/$name/ssh_config.part" "$dir/$name/known_hosts.part"
    done

    local ns launcher init deadline
    i=0
    while read -r name address; do
        ns=flotilla-$id-$name
        echo "netns $ns" >>"$dir/state"
        ip netns add "$ns"
        echo "link flv$id$i" >>"$dir/state"
        ip link add "flv$id$i" type veth peer name eth0 netns "$ns"
        ip link set "flv$id$i" master "flb$id" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$net.1"
        setsid ip netns exec "$ns" unshare --pid --fork --mount-proc --uts --ipc \
            "$script" _host "$dir" "$name" </dev/null >"$dir/$name/host.log" 2>&1 &
        launcher=$!
        # Process 1 of the host (its sshd) is the launcher's one child.
        init=""
        deadline=$((SECONDS + 10))
        while [ -z "$init" ] && [ $SECONDS -lt $deadline ]; do
            init=$(ps -o pid= --ppid "$launcher" | tr -d ' ') || true
            [ -n "$init" ] || sleep 0.02
        done
        [ -n "$init" ] || { cat "$dir/$name/host.log" >&2; die "host $name did not start"; }
        echo "$init" >"$dir/$name/init.pid"
        i=$((i + 1))
    done <"$dir/hosts"

    # Ready, all hosts at once: each sshd runs a command, and each host reaches the
    # first (a firewall that filters bridged traffic would not let it).
    local first=${names[0]} first_address
    first_address=$(awk -v n="$first" '$1 == n {print $2}' "$dir/hosts")
    jobs=()
    while read -r name address; do
        host_ready "$dir" "$name" "$address" "$first" "$first_address" "flb$id" &
        jobs+=($!)
    done <"$dir/hosts"
    for job in "${jobs[@]}"; do wait "$job" || failed=1; done
    [ -z "$failed" ] || die "the hosts did not all come up"
    trap - EXIT
    cat "$dir/hosts"
}

postgres_host() {
    local dir=$1 name=$2 user=$3 database=$4 password address network bin
    [[ $user =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { say "error: USER '$user': lower-case letters, digits and _"; usage; }
    [[ $database =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { say "error: DATABASE '$database': lower-case letters, digits and _"; usage; }
    IFS= read -r password || true
    [ -n "$password" ] || { say "error: the password is read from the first line of standard input, and it was empty"; exit 64; }
    address=$(awk -v n="$name" '$1 == n {print $2}' "$dir/hosts" 2>/dev/null)
    [ -n "$address" ] || { say "error: no host '$name' under $dir"; exit 64; }
    network=$(cat "$dir/network")
    bin=$(ensure_pg_bin)
    local data=/var/lib/postgresql/flotilla
    # The host's side reads its settings on standard input (its script is literal).
    # shellcheck disable=SC2016
    printf "%s\n" "listen_addresses = '$address'" "port = 5432" \
        "unix_socket_directories = '/run/postgresql'" "password_encryption = scram-sha-256" \
        "max_connections = 200" "fsync = off" "synchronous_commit = off" "full_page_writes = off" |
        in_host "$dir" "$name" bash -euo pipefail -c '
            bin=$1 data=$2 network=$3
            install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
            install -d -o postgres -g postgres -m 2775 /run/postgresql
            install -d -o postgres -g postgres -m 0755 /var/log/postgresql
            runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth-local=peer \
                --auth-host=scram-sha-256 -E UTF8 --no-sync >/var/log/postgresql/initdb.log 2>&1 ||
                { cat /var/log/postgresql/initdb.log >&2; exit 1; }
            echo "host all all $network scram-sha-256" >>"$data/pg_hba.conf"
            cat >>"$data/postgresql.conf"
            setsid runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l /var/log/postgresql/flotilla.log \
                -w -t 30 start </dev/null >/dev/null 2>&1 ||
                { cat /var/log/postgresql/flotilla.log >&2; exit 1; }
        ' _ "$bin" "$data" "$network"
    # The password goes to psql on its standard input, never on a command line; and the
    # server logs no statement of this session.
    printf "SET log_min_error_statement = panic;\nCREATE ROLE \"%s\" LOGIN PASSWORD '%s';\nCREATE DATABASE \"%s\" OWNER \"%s\";\n" \
        "$user" "${password//\'/\'\'}" "$database" "$user" |
        in_host "$dir" "$name" runuser -u postgres -- "$bin/psql" -h /run/postgresql -d postgres \
            -v ON_ERROR_STOP=1 -q -X -f - >/dev/null
    echo "postgres://$user@$address:5432/$database"
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
check)
    [ $# = 0 ] || usage
    reason=$(unavailable)
    [ -z "$reason" ] || { echo "$reason"; exit 69; }
    ;;
start)
    [ $# -ge 2 ] || usage
    start "$@"
    ;;
stop)
    [ $# = 1 ] || usage
    [ "$(id -u)" = 0 ] || { say "error: stop needs root"; exit 69; }
    [ -d "$1" ] || exit 0
    stop "$(cd "$1" && pwd)"
    ;;
exec)
    [ $# -ge 3 ] || usage
    in_host "$@"
    ;;
pids)
    [ $# = 2 ] || usage
    ns=$(state_get "$1" netns | grep -x "flotilla-[0-9a-f]*-$2" || true)
    [ -n "$ns" ] || { say "error: no host '$2' under $1"; exit 64; }
    ip netns pids "$ns"
    ;;
postgres)
    [ $# = 4 ] || usage
    postgres_host "$@"
    ;;
_host)
    host_main "$@"
    ;;
*)
    usage
    ;;
esac
