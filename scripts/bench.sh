#!/usr/bin/env bash
# kxlb datapath benchmarks: builds kxlb-bench (RelWithDebInfo, in build/ unless KXLB_BUILD_DIR says otherwise) if
# needed, mounts bpffs if needed, and runs it. Every figure is printed next to a baseline measured in the same run
# (xdp_pass for ns/packet, the XDP_TX reflector and iptables for packets/s), because these machines are noisy.
# Not a test and not run by CI; needs root (BPF programs, network namespaces). All traffic stays inside the
# network namespaces kxlb-bench creates (and deletes, also on failure).
#
#   scripts/bench.sh             full run (1M runs per ns case, 3 s per pps setup and thread count; < 3 min)
#   scripts/bench.sh --quick     short run (< 1 min)
#   scripts/bench.sh [--quick] -- ARGS...   extra kxlb-bench arguments, e.g. -- --only ns --case "new flow"
#   scripts/bench.sh -- --only k8s [--services N] [--changes N]   part D, only run this way: EndpointSlice change
#                                -> BPF maps latency and agent memory, real kxlb-agent fed by the fake apiserver
#                                (python3); default 10,000 services x 10 endpoints
#   scripts/bench.sh -h|--help
#
# Environment: KXLB_BUILD_DIR (default build), KXLB_BENCH_OUT (also write the report to this file).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "bench.sh: $*" >&2
    exit 1
}

quick=0
extra=()
while (($#)); do
    case "$1" in
        --quick) quick=1 ;;
        --)
            shift
            extra=("$@")
            break
            ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

((EUID == 0)) || die "must run as root (BPF programs, network namespaces): sudo $0"
# Until the benchmark runs (it has its own handling), an interrupt just ends the script.
trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }
for tool in cmake ninja clang bpftool ip ethtool; do
    have "$tool" || missing+=("$tool")
done
((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (scripts/install-deps.sh installs them)"
have iptables || echo "bench.sh: warning: iptables is not installed: the iptables DNAT comparison is skipped" \
    "(apt-get install iptables)" >&2

# ---- build ---------------------------------------------------------------------------------------
BUILD_DIR=${KXLB_BUILD_DIR:-build}
cache=$BUILD_DIR/CMakeCache.txt
if [[ -f $cache ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache"; then
    die "$BUILD_DIR was configured with another generator; set KXLB_BUILD_DIR to another directory"
fi
if [[ -f $cache ]] && ! grep -q '^CMAKE_BUILD_TYPE:STRING=RelWithDebInfo$' "$cache"; then
    die "$BUILD_DIR is not a RelWithDebInfo build; benchmarks need one (set KXLB_BUILD_DIR to another directory)"
fi
if [[ ! -f $cache ]]; then
    echo "==> configure: cmake -S . -B $BUILD_DIR -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo"
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
echo "==> build: cmake --build $BUILD_DIR --target kxlb-bench"
cmake --build "$BUILD_DIR" --target kxlb-bench | tail -n 1
BENCH=$BUILD_DIR/userspace/bench/kxlb-bench
[[ -x $BENCH ]] || die "$BENCH was not built"

# ---- environment ---------------------------------------------------------------------------------
if [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null || true) != bpf_fs ]]; then
    echo "==> mounting bpffs at /sys/fs/bpf"
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf || echo "bench.sh: warning: could not mount bpffs at /sys/fs/bpf" >&2
fi
ulimit -l unlimited 2>/dev/null || true # older kernels charge BPF maps to RLIMIT_MEMLOCK

args=()
((quick)) && args+=(--quick)
args+=("${extra[@]}")

# Namespaces of a kxlb-bench that died without tearing down (SIGKILL): "kxlb-<pid>-<tag>-<name>".
remove_leftovers() {
    local pid=$1 ns
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^kxlb-$pid-[0-9a-f]{4}-" || true); do
        echo "bench.sh: removing leftover namespace $ns" >&2
        ip netns del "$ns" 2>/dev/null || true
    done
}

run_bench() {
    echo "kxlb benchmarks $(date -u +%Y-%m-%dT%H:%M:%SZ)," \
        "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "kernel $(uname -r), $(nproc) CPU(s): $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
        "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo ?)," \
        "BPF JIT $(cat /proc/sys/net/core/bpf_jit_enable 2>/dev/null || echo ?)"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other load on these CPUs is noise: compare" \
        "the ratios, which are measured side by side)"
    # Bounded: a full run takes about 2 minutes; a watchdog sends SIGTERM after 280 s and SIGKILL 15 s later.
    # SIGINT/SIGTERM make kxlb-bench stop its loops and tear its lab down; if it had to be killed, its namespaces
    # (named after its pid) are removed here.
    "$BENCH" "${args[@]}" &
    local pid=$! rc=0
    (
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        sleep 280 &
        nap=$!
        wait "$nap"
        kill -TERM "$pid" 2>/dev/null || exit 0
        echo "bench.sh: kxlb-bench exceeded 280 s: terminated" >&2
        sleep 15 &
        nap=$!
        wait "$nap"
        kill -KILL "$pid" 2>/dev/null || true
    ) &
    local watchdog=$!
    trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
    wait "$pid" || rc=$?
    while kill -0 "$pid" 2>/dev/null; do # wait returns early when a trapped signal arrives
        wait "$pid" || rc=$?
    done
    trap 'echo "bench.sh: interrupted" >&2; exit 130' INT TERM
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    remove_leftovers "$pid"
    return "$rc"
}

if [[ -n ${KXLB_BENCH_OUT:-} ]]; then
    run_bench 2>&1 | tee "$KXLB_BENCH_OUT"
    exit "${PIPESTATUS[0]}"
fi
run_bench
