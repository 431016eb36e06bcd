#!/usr/bin/env bash
# kxlb demo (the README's "run it" command): builds kxlb if needed and runs kxlb-demo — a network-
# namespace lab with three nginx "apiservers" (https /readyz), a node running the real kxlb-agent
# (XDP full-NAT for an external client, socket-LB for a node-local client, https health probes):
# a dead backend leaves rotation and comes back, and the agent is SIGKILLed and restarted under
# traffic with zero failed requests. Needs root; installs missing Debian packages; cleans up.
#
# Usage: sudo scripts/demo.sh        (KXLB_BUILD_DIR overrides the build dir, default: build)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
BUILD_DIR=${KXLB_BUILD_DIR:-build}

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: needs root (network namespaces, BPF): run it with sudo" >&2
    exit 1
fi
scripts/install-deps.sh --check >/dev/null 2>&1 || scripts/install-deps.sh
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
    mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
echo "building kxlb-demo ..."
ninja -C "$BUILD_DIR" kxlb-demo kxlb-agent >/dev/null
exec "$BUILD_DIR/userspace/demo/kxlb-demo" "$@"
