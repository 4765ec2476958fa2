#!/usr/bin/env bash
# Side-by-side check of container isolation: the OCI spec berthd writes for
# a default `docker run IMG sleep 300` (and the same with --privileged)
# against the one Debian's dockerd writes for the same command on the same
# host, field by field for
# capabilities, seccomp, AppArmor, no-new-privileges, masked and read-only
# paths, devices, /dev/shm and the mount table (bench/spec_compare.py).
#
#   bench/spec-vs-dockerd.sh [> bench/results/spec-vs-dockerd.txt]
#
# Needs root, /usr/sbin/dockerd (docker.io) with containerd, the docker CLI,
# busybox-static, python3 and a built berthd (BERTHD, default
# target/debug/berthd). Each daemon gets its own data root, exec root,
# socket and bridge (dockerd's pre-made, --iptables=false: --bridge=none
# would delete a shared docker0); everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTHD="${BERTHD:-$PWD/target/debug/berthd}"
DOCKERD="${DOCKERD:-/usr/sbin/dockerd}"
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for f in "$BERTHD" "$DOCKERD" /usr/bin/busybox /usr/local/bin/docker; do
    [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }
done

work="$(mktemp -d /var/tmp/berth-spec-vs-dockerd-XXXXXX)"
dbridge="bspecd$$"
bbridge="bspecb$$"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    ip link del "$dbridge" 2>/dev/null || true
    ip link del "$bbridge" 2>/dev/null || true
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The image: busybox-static with its applets, imported into both daemons.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /usr/bin/busybox "$work/rootfs/bin/"
for a in $(/usr/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
export DOCKER_CONFIG="$work/docker-config"

wait_socket() {
    for _ in $(seq 300); do
        docker -H "unix://$1" version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "daemon at $1 did not start; log:" >&2
    tail -50 "$2" >&2
    return 1
}

# dockerd on its own bridge.
ip link add "$dbridge" type bridge
ip addr add 10.213.7.1/24 dev "$dbridge"
ip link set "$dbridge" up
mkdir -p "$work/dockerd"
echo "{}" > "$work/dockerd/daemon.json"
"$DOCKERD" --data-root "$work/dockerd/data" --exec-root "$work/dockerd/exec" \
    -H "unix://$work/dockerd/sock" --pidfile "$work/dockerd/pid" \
    --bridge "$dbridge" --iptables=false --ip6tables=false --config-file "$work/dockerd/daemon.json" \
    >"$work/dockerd/log" 2>&1 &
pids+=($!)
# berthd on its own bridge.
mkdir -p "$work/berthd"
echo '{}' > "$work/berthd/daemon.json"
"$BERTHD" --data-root "$work/berthd/data" --exec-root "$work/berthd/exec" \
    -H "unix://$work/berthd/sock" --pidfile "$work/berthd/pid" \
    --bridge "$bbridge" --bip 10.213.8.1/24 --iptables=false \
    --config-file "$work/berthd/daemon.json" \
    >"$work/berthd/log" 2>&1 &
pids+=($!)
wait_socket "$work/dockerd/sock" "$work/dockerd/log"
wait_socket "$work/berthd/sock" "$work/berthd/log"

# spec_of NAME VARIANT SOCKET EXEC_ROOT [RUN ARGS...]: runs the container,
# copies its config.json to $work/NAME-VARIANT.json and prints where the
# daemon wrote it, or prints why it could not run and fails.
spec_of() {
    local name="$1" variant="$2" sock="$3" exec_root="$4"
    shift 4
    local d=(docker -H "unix://$sock")
    "${d[@]}" image inspect spec-bench:busybox >/dev/null 2>&1 ||
        "${d[@]}" import "$work/rootfs.tar" spec-bench:busybox >/dev/null
    local id
    if ! id="$("${d[@]}" run -d --name "spec-$variant" "$@" spec-bench:busybox sleep 300 2>"$work/err")"; then
        echo "could not run it: $(head -1 "$work/err")"
        "${d[@]}" rm -f "spec-$variant" >/dev/null 2>&1 || true
        return 1
    fi
    local found
    found="$(find "$exec_root" -path "*$id*" -name config.json 2>/dev/null | head -1)"
    if [ -z "$found" ]; then
        echo "no config.json found for $id"
        return 1
    fi
    cp "$found" "$work/$name-$variant.json"
    "${d[@]}" rm -f "spec-$variant" >/dev/null
    echo "$found" | sed "s|$work|<work>|"
}

echo "# berth vs dockerd: OCI spec of \`docker run [--privileged] IMG sleep 300\`"
echo "# host: $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "# dockerd: $("$DOCKERD" --version)"
echo "# berthd: $("$BERTHD" --version 2>/dev/null || echo unknown)"
echo "# runc: $(runc --version | head -1)"

for variant in default privileged; do
    args=()
    [ "$variant" = privileged ] && args=(--privileged)
    echo
    echo "######## docker run ${args[*]} IMG sleep 300"
    theirs="$work/dockerd-$variant.json"
    if ! out="$(spec_of dockerd "$variant" "$work/dockerd/sock" "$work/dockerd/exec" "${args[@]}")"; then
        echo "# dockerd: $out"
        echo "# so berthd's spec is compared with dockerd's *default* one: the"
        echo "# differences are what --privileged lifts."
        theirs="$work/dockerd-default.json"
    else
        echo "# dockerd bundle: $out"
    fi
    echo "# berthd bundle:  $(spec_of berthd "$variant" "$work/berthd/sock" "$work/berthd/exec" "${args[@]}")"
    echo
    python3 bench/spec_compare.py "$theirs" "$work/berthd-$variant.json"
done
