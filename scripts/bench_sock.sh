#!/usr/bin/env bash
# Socket-LB benchmark: builds kxlb-sockbench (Ninja, RelWithDebInfo) and runs it. It compares node-local
# clients reaching a backend through the socket-level load balancer (client in a cgroup, dialling a VIP
# that exists nowhere) against dialling the same backend directly, an nginx `stream` proxy and haproxy
# (tcp mode) on the node, for short connections and keep-alive requests. All traffic stays in a netns lab.
# Many short rounds, the setups' order rotated per round, clients and backend pinned alike; it prints the
# median over rounds of req/s, p50 and p99 and of the per-round ratios to direct, plus an A/A control
# (direct measured twice) that shows the noise floor. Not a test: exit 0 unless it cannot run.
#
# Usage: sudo scripts/bench_sock.sh [--quick] [--rounds N] [--seconds S] [--conns N] [--setups A,B]
#                                   [--workloads short,keepalive] [--no-pin | --proxies-unpinned]
#   --quick  < 30 s (2 rounds x 0.5 s per case); default 10 rounds x 1 s per case (< 3 min)
# Environment: KXLB_BUILD_DIR (default: build-sockbench), KXLB_NO_BUILD=1 to use an existing binary.
# Needs root, cgroup v2 at /sys/fs/cgroup/unified, nginx-light + libnginx-mod-stream, haproxy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${KXLB_BUILD_DIR:-$ROOT/build-sockbench}

for arg in "$@"; do
    case "$arg" in
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "bench_sock.sh: needs root (BPF, network namespaces, cgroups)" >&2
    exit 2
fi
trap 'echo "bench_sock.sh: interrupted" >&2; exit 130' INT TERM
if [[ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]]; then
    echo "bench_sock.sh: note: nginx stream module missing (apt-get install libnginx-mod-stream); its row is skipped" >&2
fi

if [[ ${KXLB_NO_BUILD:-0} != 1 ]]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    ninja -C "$BUILD" kxlb-sockbench >/dev/null
fi
BENCH=$BUILD/userspace/sockbench/kxlb-sockbench
[[ -x $BENCH ]] || {
    echo "bench_sock.sh: $BENCH was not built" >&2
    exit 2
}

# What a kxlb-sockbench killed before its own cleanup (SIGKILL) leaves: its namespaces
# "kxlb-<pid>-<tag>-<name>" and its cgroups "kxlb-sockbench-<pid>-*".
remove_leftovers() {
    local pid=$1 ns cg
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^kxlb-$pid-[0-9a-f]{4}-" || true); do
        echo "bench_sock.sh: removing leftover namespace $ns" >&2
        ip netns del "$ns" 2>/dev/null || true
    done
    for cg in /sys/fs/cgroup/unified/kxlb-sockbench-"$pid"-*; do
        [[ -d $cg ]] || continue
        echo "bench_sock.sh: removing leftover cgroup $cg" >&2
        while read -r p; do echo "$p" >/sys/fs/cgroup/unified/cgroup.procs 2>/dev/null || true; done <"$cg/cgroup.procs"
        rmdir "$cg" 2>/dev/null || true
    done
}

# Every setup runs under the same (raised) priority, so that other work on a shared machine disturbs the
# comparison less; the load average is printed because it still matters on a busy host.
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, kernel $(uname -r)"
# Bounded: the driver refuses plans longer than 20 min; a watchdog sends SIGTERM after 25 min (the driver
# then stops between cases and tears its lab down) and SIGKILL 30 s later.
nice -n -10 "$BENCH" "$@" &
pid=$!
{ sleep 1500 && kill -TERM "$pid" 2>/dev/null && echo "bench_sock.sh: over 1500 s: terminated" >&3 &&
    sleep 30 && kill -KILL "$pid" 2>/dev/null; } 3>&2 2>/dev/null & # 2>/dev/null: no "Terminated" at the end
watchdog=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
rc=0
while kill -0 "$pid" 2>/dev/null; do # wait returns early on a trapped signal; bounded by the watchdog
    wait "$pid" || rc=$?
done
trap 'echo "bench_sock.sh: interrupted" >&2; exit 130' INT TERM
pkill -P "$watchdog" sleep 2>/dev/null || true # its sleep: then the watchdog ends without acting
wait "$watchdog" 2>/dev/null || true
remove_leftovers "$pid"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$rc"
