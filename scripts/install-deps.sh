#!/usr/bin/env bash
# Install the Debian 12 packages kxlb needs to build, lint and test. Idempotent: does nothing (and
# touches no package list) when everything is already installed. Needs root to install.
#
#   scripts/install-deps.sh           install what is missing
#   scripts/install-deps.sh --check   only report what is missing (exit 1 if anything is)
#   scripts/install-deps.sh --list    print the package list
#
# Daemon packages (nginx-light, haproxy, prometheus: used by tests as plain binaries, prometheus for
# promtool) must never leave a system service running that binds ports. While installing them a
# temporary policy-rc.d forbids service starts (unless the machine already has one), and afterwards
# their services are stopped and disabled with whatever init tooling exists (systemd may not run).
set -euo pipefail

PACKAGES=(
    # toolchain
    build-essential cmake ninja-build pkg-config clang llvm
    # BPF
    libbpf-dev bpftool libelf-dev zlib1g-dev linux-libc-dev
    # userspace libraries
    libspdlog-dev libfmt-dev libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libyaml-cpp-dev
    libcli11-dev prometheus-cpp-dev libcurl4-openssl-dev libssl-dev
    # tests
    libgtest-dev libgmock-dev googletest
    # lab / e2e tooling
    iproute2 iputils-ping curl ethtool util-linux procps iptables openssl python3
    # lint
    clang-format clang-tidy
    # real peers for e2e tests (binaries only; their system services are kept off)
    nginx-light libnginx-mod-stream haproxy prometheus
)
# Packages that ship a system service, and the service names to keep stopped and disabled.
DAEMON_PACKAGES=(nginx-light haproxy prometheus)
DAEMON_SERVICES=(nginx haproxy prometheus prometheus-node-exporter)

log() { printf 'install-deps: %s\n' "$*" >&2; }

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

mode=install
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --list)
        printf '%s\n' "${PACKAGES[@]}"
        exit 0
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        log "unknown argument: $1"
        usage >&2
        exit 2
        ;;
esac

is_installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)
    [[ $status == ii* ]]
}

missing=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    log "all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

log "missing packages: ${missing[*]}"
if [[ $mode == check ]]; then
    exit 1
fi
if ((EUID != 0)); then
    log "must run as root to install them (e.g. sudo $0)"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends
    -o DPkg::Lock::Timeout=600
    -o Dpkg::Options::=--force-confdef
    -o Dpkg::Options::=--force-confold)

installing_daemon=0
for p in "${missing[@]}"; do
    for d in "${DAEMON_PACKAGES[@]}"; do
        [[ $p == "$d" ]] && installing_daemon=1
    done
done

# Forbid service starts during the install, unless the machine already has a policy of its own.
POLICY=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if ((own_policy)); then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if ((installing_daemon)) && [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# temporary, written by kxlb scripts/install-deps.sh\nexit 101\n' >"$POLICY"
    chmod 0755 "$POLICY"
    own_policy=1
fi

# retry <cmd...>: a second attempt after a pause, for transient mirror/network hiccups.
retry() {
    "$@" && return 0
    log "'$*' failed; retrying in 10 s"
    sleep 10
    "$@"
}
log "apt-get update"
retry apt-get update -q -o DPkg::Lock::Timeout=600
log "apt-get install ${missing[*]}"
retry apt-get install "${APT_OPTS[@]}" "${missing[@]}"

# Keep the daemons' system services stopped and disabled; tests start their own instances.
quiesce_service() {
    local svc=$1
    local have_unit=0 have_init=0
    [[ -e /lib/systemd/system/$svc.service || -e /etc/systemd/system/$svc.service ]] && have_unit=1
    [[ -e /etc/init.d/$svc ]] && have_init=1
    ((have_unit || have_init)) || return 0
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
        systemctl stop "$svc" >/dev/null 2>&1 || true
    else
        if ((have_unit)) && command -v systemctl >/dev/null; then
            systemctl disable "$svc" >/dev/null 2>&1 || true # offline: only removes the symlinks
        fi
        if ((have_init)); then
            if command -v update-rc.d >/dev/null; then
                update-rc.d "$svc" disable >/dev/null 2>&1 || true
            fi
            if command -v service >/dev/null; then
                service "$svc" stop >/dev/null 2>&1 || true
            else
                "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            fi
        fi
    fi
    log "service $svc: stopped and disabled"
}
if ((installing_daemon)); then
    for svc in "${DAEMON_SERVICES[@]}"; do
        quiesce_service "$svc"
    done
fi

still_missing=()
for p in "${PACKAGES[@]}"; do
    is_installed "$p" || still_missing+=("$p")
done
if ((${#still_missing[@]})); then
    log "still missing after install: ${still_missing[*]}"
    exit 1
fi
log "done: ${#missing[@]} package(s) installed"
