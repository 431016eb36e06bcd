#!/usr/bin/env bash
# Socket-LB benchmark: builds kxlb-sockbench (Ninja, RelWithDebInfo) and runs it. It compares node-local
# clients reaching a backend through the socket-level load balancer (client in a cgroup, dialling a VIP
# that exists nowhere) against dialling the backend directly, an nginx `stream` proxy and haproxy (tcp
# mode) on the node, for short connections and keep-alive requests. All traffic stays in a netns lab.
# Not a test: it prints a table (req/s, p50/p99 latency, ratios to direct); exit 0 unless it cannot run.
#
# Usage: sudo scripts/bench_sock.sh [--quick] [--seconds S] [--rounds N] [--conns N]
#   --quick  < 30 s (2 rounds x 1 s per case); default 3 rounds x 3 s per case (< 2 min)
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
if [[ ! -f /usr/lib/nginx/modules/ngx_stream_module.so ]]; then
    echo "bench_sock.sh: note: nginx stream module missing (apt-get install libnginx-mod-stream); its row is skipped" >&2
fi

if [[ ${KXLB_NO_BUILD:-0} != 1 ]]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    ninja -C "$BUILD" kxlb-sockbench >/dev/null
fi

# Every setup runs under the same (raised) priority, so that other work on a shared machine disturbs the
# comparison less; the load average is printed because it still matters on a busy host.
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
exec timeout --signal=TERM --kill-after=10 170 nice -n -10 "$BUILD/userspace/sockbench/kxlb-sockbench" "$@"
