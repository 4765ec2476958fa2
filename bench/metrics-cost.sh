#!/usr/bin/env bash
# What monitoring costs berthd with many containers: N idle containers
# (default 100) sampled every second, then
#   1. the daemon's CPU over SECONDS_MEASURED seconds with nobody watching
#      (the stats sampler and the storage refresh; the berth-stats thread
#      alone is reported too),
#   2. the same while /metrics is scraped every second (Prometheus's
#      default is 15 s: this is the worst case), and
#   3. the wall time of 20 scrapes of /metrics in a row (curl), with the
#      page's size.
#
#   sudo bench/metrics-cost.sh
#   sudo N=100 SECONDS_MEASURED=60 BERTHD=target/release/berthd bench/metrics-cost.sh
#
# Needs root, the docker CLI, busybox-static, curl and a built berthd
# (default target/release/berthd, else target/debug/berthd; build with
# `cargo build --release -p berthd -p berth-shim`). berthd runs on its own
# data root (overlay2 under /var/tmp), exec root and socket, without the
# default bridge (`--bridge none`: containers get a network namespace with
# loopback only) so the run touches nothing of the host's networking.
# Everything is removed at the end. Prints a table; numbers for
# docs/dashboard.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-100}"
SECONDS_MEASURED="${SECONDS_MEASURED:-60}"
if [ -z "${BERTHD:-}" ]; then
    BERTHD="$PWD/target/release/berthd"
    [ -x "$BERTHD" ] || BERTHD="$PWD/target/debug/berthd"
fi
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for f in "$BERTHD" "$(dirname "$BERTHD")/berth-shim" /usr/bin/busybox /usr/local/bin/docker; do
    [ -x "$f" ] || { echo "missing $f" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }

work="$(mktemp -d /var/tmp/berth-metrics-cost-XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
export DOCKER_HOST="unix://$work/berth.sock"
pid=
cleanup() {
    set +e
    if [ -n "$pid" ]; then
        docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "berthd: $BERTHD; $N containers; $SECONDS_MEASURED s per measurement" >&2
"$BERTHD" --data-root "$work/root" --exec-root "$work/exec" -H "$DOCKER_HOST" \
    --pidfile "$work/berthd.pid" --config-file /dev/null -s overlay2 --bridge none \
    --metrics-addr "$addr" >"$work/berthd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    docker version >/dev/null 2>&1 && break
    sleep 0.2
done

# A one-layer busybox image.
mkdir -p "$work/rootfs/bin"
cp /usr/bin/busybox "$work/rootfs/bin/"
ln -s busybox "$work/rootfs/bin/sh"
ln -s busybox "$work/rootfs/bin/sleep"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
docker import "$work/rootfs.tar" bench/busybox >/dev/null

echo "starting $N containers..." >&2
for i in $(seq "$N"); do
    docker run -d --name "c$i" --label "bench.index=$i" bench/busybox sleep 1000000 >/dev/null
done
running="$(docker ps -q | wc -l)"
[ "$running" = "$N" ] || { echo "only $running of $N containers running" >&2; exit 1; }
# Let the sampler measure every writable layer once.
sleep 10

hz="$(getconf CLK_TCK)"
# utime+stime of the process (or of one thread) in clock ticks.
ticks() { awk '{ print $14 + $15 }' "$1"; }
utime() { awk '{ print $14 }' "$1"; }
stats_thread() {
    for t in /proc/"$pid"/task/*; do
        [ "$(cat "$t/comm")" = berth-stats ] && { echo "$t/stat"; return; }
    done
}
st="$(stats_thread)"

measure() { # label, then runs the scraper (or not) for SECONDS_MEASURED
    local label="$1" scrape="$2"
    local p0 s0 su0 p1 s1 scraper=
    p0="$(ticks /proc/$pid/stat)"; s0="$(ticks "$st")"; su0="$(utime "$st")"
    if [ "$scrape" = yes ]; then
        (while :; do curl -s -o /dev/null "http://$addr/metrics"; sleep 1; done) &
        scraper=$!
    fi
    sleep "$SECONDS_MEASURED"
    [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
    p1="$(ticks /proc/$pid/stat)"; s1="$(ticks "$st")"
    local u=$(($(utime "$st") - su0))
    awk -v l="$label" -v p=$((p1 - p0)) -v s=$((s1 - s0)) -v u="$u" -v hz="$hz" -v t="$SECONDS_MEASURED" \
        'BEGIN { printf "| %s | %.2f%% | %.2f%% (user %.2f%%, kernel %.2f%%) |\n", l, 100 * p / hz / t, 100 * s / hz / t, 100 * u / hz / t, 100 * (s - u) / hz / t }'
}

echo
echo "| $N containers, 1 s interval | berthd CPU (share of one core) | berth-stats thread |"
echo "|---|---|---|"
measure "idle (sampler + storage refresh)" no
measure "/metrics scraped every 1 s" yes

times=()
for _ in $(seq 20); do
    times+=("$(curl -s -o "$work/metrics.txt" -w '%{time_total}' "http://$addr/metrics")")
done
sorted="$(printf '%s\n' "${times[@]}" | sort -n)"
median="$(echo "$sorted" | sed -n 10p)"
worst="$(echo "$sorted" | tail -1)"
size="$(wc -c <"$work/metrics.txt")"
lines="$(grep -vc '^#' "$work/metrics.txt")"
tick="$(curl -s "http://$addr/metrics" | awk '/^berth_stats_tick_seconds/ { print $2 }')"
echo
echo "| /metrics scrape ($N containers) | value |"
echo "|---|---|"
awk -v m="$median" -v w="$worst" 'BEGIN { printf "| median of 20 | %.1f ms |\n| slowest of 20 | %.1f ms |\n", m * 1000, w * 1000 }'
echo "| size | $size bytes, $lines samples |"
awk -v t="$tick" 'BEGIN { printf "| sampler tick (all containers read) | %.1f ms |\n", t * 1000 }'
