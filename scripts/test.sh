#!/usr/bin/env bash
# kxlb test runner: installs missing build deps, builds (regular + ASan/UBSan) with Ninja, runs the
# ctest tiers of each build, runs the format check, and prints a summary whose last line is
# "N passed, N failed, N skipped".
#
# Usage: scripts/test.sh [--tier unit|bpf|e2e]... [--no-asan] [--no-format] [--help]
#   --tier T      run only tier T (repeatable); default: unit, bpf and e2e
#   --no-asan     skip the sanitizer build (same as KXLB_SKIP_ASAN=1)
#   --no-format   skip the clang-format check
#
# Tiers (ctest labels): unit (no privileges), bpf (root: BPF_PROG_TEST_RUN), e2e (root: network
# namespaces with real traffic). Without root the privileged tiers report their tests as skipped.
#
# Environment:
#   KXLB_REQUIRE_PRIVILEGED=1  privileged tests must run: refuse to start without root, and fail if
#                              any bpf/e2e test was skipped (CI sets this)
#   KXLB_BUILD_DIR             regular build dir (default: build, RelWithDebInfo)
#   KXLB_ASAN_BUILD_DIR        sanitizer build dir (default: build-asan, -DKXLB_SANITIZE=ON)
#   KXLB_ASAN_BUILD_TYPE       sanitizer build type (default: Debug)
#   KXLB_SKIP_ASAN=1           skip the sanitizer build
#   KXLB_JOBS                  build/test parallelism (default: 2)
#   KXLB_TIER_TIMEOUT          seconds one tier's ctest run may take before it is killed (default: 900)
#
# Exit status is non-zero if a build failed, a test failed, a tier ran no tests (the one exception:
# bpf/e2e all skipped when not root and KXLB_REQUIRE_PRIVILEGED is unset), the format check failed,
# or (with KXLB_REQUIRE_PRIVILEGED=1) a bpf/e2e test was skipped. Such a problem that is not itself a
# failed test (build failure, empty tier, ...) counts as one failed in the totals.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" # bpftool, nginx, haproxy live in sbin

# Prints the header comment above (up to the first non-comment line).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
die() {
    echo "test.sh: $*" >&2
    exit 1
}

# ---- arguments ---------------------------------------------------------------------------------
ALL_TIERS=(unit bpf e2e)
TIERS=()
SKIP_ASAN=${KXLB_SKIP_ASAN:-0}
SKIP_ASAN_WHY="KXLB_SKIP_ASAN=1"
RUN_FORMAT=1
while (($#)); do
    case "$1" in
        --tier)
            (($# >= 2)) || die "--tier needs an argument: unit, bpf or e2e"
            case "$2" in
                unit | bpf | e2e) [[ " ${TIERS[*]-} " == *" $2 "* ]] || TIERS+=("$2") ;;
                *) die "unknown tier '$2' (unit, bpf or e2e)" ;;
            esac
            shift 2
            ;;
        --tier=*)
            set -- --tier "${1#--tier=}" "${@:2}"
            ;;
        --no-asan)
            SKIP_ASAN=1
            SKIP_ASAN_WHY="--no-asan"
            shift
            ;;
        --no-format)
            RUN_FORMAT=0
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
((${#TIERS[@]})) || TIERS=("${ALL_TIERS[@]}")
# Keep the canonical order whatever order --tier was given in.
ordered=()
for t in "${ALL_TIERS[@]}"; do
    [[ " ${TIERS[*]} " == *" $t "* ]] && ordered+=("$t")
done
TIERS=("${ordered[@]}")

REQUIRE_PRIV=0
[[ ${KXLB_REQUIRE_PRIVILEGED:-} == 1 ]] && REQUIRE_PRIV=1
JOBS=${KXLB_JOBS:-2}
TIER_TIMEOUT=${KXLB_TIER_TIMEOUT:-900}
BUILD_DIR=${KXLB_BUILD_DIR:-build}
ASAN_BUILD_DIR=${KXLB_ASAN_BUILD_DIR:-build-asan}
ASAN_BUILD_TYPE=${KXLB_ASAN_BUILD_TYPE:-Debug}

wants_privileged=0
for t in "${TIERS[@]}"; do
    [[ $t == bpf || $t == e2e ]] && wants_privileged=1
done
if ((REQUIRE_PRIV && wants_privileged && EUID != 0)); then
    die "KXLB_REQUIRE_PRIVILEGED=1: the bpf and e2e tiers need root; run as root or unset it"
fi

# ---- dependencies --------------------------------------------------------------------------------
REQUIRED_COMMANDS=(cmake ninja pkg-config cc c++ clang llvm-strip bpftool clang-format clang-tidy
    ip ping curl ethtool setpriv timeout mount nginx haproxy promtool)
REQUIRED_HEADERS=(
    /usr/include/bpf/libbpf.h
    /usr/include/gelf.h
    /usr/include/zlib.h
    /usr/include/linux/bpf.h
    /usr/include/gtest/gtest.h
    /usr/include/gmock/gmock.h
    /usr/include/spdlog/spdlog.h
    /usr/include/fmt/format.h
    /usr/include/CLI/CLI.hpp
    /usr/include/nlohmann/json.hpp
    /usr/include/yaml-cpp/yaml.h
    /usr/include/libnl3/netlink/netlink.h
    /usr/include/libnl3/netlink/route/link.h
    /usr/include/prometheus/registry.h
    /usr/include/prometheus/exposer.h
    /usr/include/openssl/ssl.h
)
missing_deps() {
    local c h
    for c in "${REQUIRED_COMMANDS[@]}"; do
        command -v "$c" >/dev/null 2>&1 || echo "command: $c"
    done
    for h in "${REQUIRED_HEADERS[@]}"; do
        [[ -e $h ]] || echo "header: $h"
    done
    # curl's header lives in a multiarch dir
    compgen -G "/usr/include/*/curl/curl.h" >/dev/null || [[ -e /usr/include/curl/curl.h ]] ||
        echo "header: curl/curl.h"
}
mapfile -t missing < <(missing_deps)
if ((${#missing[@]})); then
    if ((EUID != 0)); then
        echo "test.sh: missing build/test dependencies:" >&2
        printf '  %s\n' "${missing[@]}" >&2
        die "run 'sudo scripts/install-deps.sh' (or this script as root) to install them"
    fi
    echo "==> installing missing dependencies (${#missing[@]} missing): scripts/install-deps.sh"
    scripts/install-deps.sh
    mapfile -t missing < <(missing_deps)
    if ((${#missing[@]})); then
        printf '  %s\n' "${missing[@]}" >&2
        die "still missing after scripts/install-deps.sh"
    fi
fi

# ---- environment ---------------------------------------------------------------------------------
if ((EUID == 0)) && [[ $(stat -f -c %T /sys/fs/bpf 2>/dev/null || true) != bpf_fs ]]; then
    echo "==> mounting bpffs at /sys/fs/bpf"
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf || echo "test.sh: warning: could not mount bpffs at /sys/fs/bpf" >&2
fi
cgroup2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts 2>/dev/null || true)
echo "==> kernel $(uname -r), euid $EUID, bpffs: $(stat -f -c %T /sys/fs/bpf 2>/dev/null || echo none)," \
    "cgroup2: ${cgroup2:-none}, tiers: ${TIERS[*]}, KXLB_REQUIRE_PRIVILEGED=${KXLB_REQUIRE_PRIVILEGED:-unset}"

# ---- results bookkeeping -------------------------------------------------------------------------
ROWS=()     # "build|tier|passed|failed|skipped|note"
PROBLEMS=() # human-readable reasons for a non-zero exit
TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
add_row() { # build tier passed failed skipped note
    ROWS+=("$1|$2|$3|$4|$5|$6")
    [[ $3 =~ ^[0-9]+$ ]] && TOTAL_PASSED=$((TOTAL_PASSED + $3))
    [[ $4 =~ ^[0-9]+$ ]] && TOTAL_FAILED=$((TOTAL_FAILED + $4))
    [[ $5 =~ ^[0-9]+$ ]] && TOTAL_SKIPPED=$((TOTAL_SKIPPED + $5))
    return 0
}

# parse_junit <file>: one line per test case, "P|F|S<TAB>name<TAB>detail", from ctest's --output-junit.
# ctest 3.25 writes status="run" (passed), status="fail" (failed, timed out, crashed),
# status="notrun" + <skipped message="SKIP_REGULAR_EXPRESSION_MATCHED"/> (GTEST_SKIP via the
# SKIP_REGULAR_EXPRESSION property), status="notrun" + another message such as "Unable to find
# executable" (ctest counts that as a failure, and so do we) and status="disabled" (DISABLED property).
parse_junit() {
    awk '
        function attr(line, key,    m) {
            if (match(line, key "=\"[^\"]*\"")) {
                m = substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 3)
                gsub(/&quot;/, "\"", m); gsub(/&apos;/, "\047", m); gsub(/&lt;/, "<", m)
                gsub(/&gt;/, ">", m); gsub(/&amp;/, "\\&", m)
                return m
            }
            return ""
        }
        function finish() {
            if (!open) return
            if (status == "run") print "P\t" name "\t"
            else if (status == "fail") print "F\t" name "\tfailed"
            else if (status == "notrun" && reason == "SKIP_REGULAR_EXPRESSION_MATCHED") print "S\t" name "\tskipped"
            else if (status == "disabled") print "S\t" name "\tdisabled"
            else if (status == "notrun") print "F\t" name "\tnot run: " reason
            else print "F\t" name "\tunknown status " status
            open = 0
        }
        /<testcase / {
            finish(); open = 1; name = attr($0, "name"); status = attr($0, "status"); reason = ""
            sub(/  # GetParam\(\) = .*/, "", name) # value-parameterized gtest names carry a dump of the value
        }
        /<skipped / { if (open) reason = attr($0, "message") }
        /<\/testcase>/ { finish() }
        END { finish() }
    ' "$1"
}

# ---- format check --------------------------------------------------------------------------------
if ((RUN_FORMAT)); then
    echo
    echo "==> format check: scripts/format.sh --check"
    if scripts/format.sh --check; then
        add_row "-" "format" 1 0 0 "clang-format --dry-run -Werror"
    else
        add_row "-" "format" 0 1 0 "files need formatting: scripts/format.sh --fix"
        PROBLEMS+=("format check failed (scripts/format.sh --fix)")
    fi
fi

# ---- build + test --------------------------------------------------------------------------------
# build_tree <label> <dir> <build type> [cmake args...]: configure + build with Ninja; 0 on success.
build_tree() {
    local label=$1 dir=$2 type=$3
    shift 3
    local cache=$dir/CMakeCache.txt
    if [[ -f $cache ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache"; then
        echo "==> [$label] $dir was configured with another generator: removing its CMake cache"
        rm -rf -- "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    echo
    echo "==> [$label] configure: cmake -S . -B $dir -G Ninja -DCMAKE_BUILD_TYPE=$type $*"
    "${RUN_ENV[@]}" cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DKXLB_BUILD_TESTS=ON "$@" ||
        return 1
    echo "==> [$label] build: cmake --build $dir -j $JOBS"
    # (gtest_discover_tests runs the test binaries at build time, so the sanitizer options apply here too)
    "${RUN_ENV[@]}" cmake --build "$dir" -j "$JOBS" || return 1
}

# run_tier <label> <dir> <tier>: runs one ctest label, parses its junit file, records the row.
run_tier() {
    local label=$1 dir=$2 tier=$3
    local results=$dir/test-results
    local junit=$results/$tier.xml log=$results/$tier.log
    mkdir -p "$results"
    rm -f "$junit"
    local -a par=()
    [[ $tier == unit ]] && par=(-j "$JOBS")
    echo
    echo "==> [$label] tier $tier: ctest --test-dir $dir -L '^$tier\$' ${par[*]}"
    local rc
    set +e
    "${RUN_ENV[@]}" timeout --kill-after=30 "$TIER_TIMEOUT" \
        ctest --test-dir "$dir" -L "^$tier\$" "${par[@]}" --output-on-failure --timeout 600 \
        --output-junit "$(cd "$results" && pwd)/$tier.xml" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e

    if [[ ! -s $junit ]]; then
        local why="ctest wrote no junit file (exit $rc)"
        ((rc == 124 || rc == 137)) && why="timed out after ${TIER_TIMEOUT}s"
        add_row "$label" "$tier" 0 1 0 "$why"
        PROBLEMS+=("[$label] tier $tier: $why")
        return
    fi
    local passed=0 failed=0 skipped=0 kind name detail
    local -a failed_names=() skipped_names=()
    while IFS=$'\t' read -r kind name detail; do
        case "$kind" in
            P) passed=$((passed + 1)) ;;
            F)
                failed=$((failed + 1))
                failed_names+=("$name ($detail)")
                ;;
            S)
                skipped=$((skipped + 1))
                skipped_names+=("$name")
                ;;
        esac
    done < <(parse_junit "$junit")

    local note="" extra_failed=0
    local ran=$((passed + failed))
    if ((ran == 0)) && [[ $tier != unit ]] && ((EUID != 0 && skipped > 0 && !REQUIRE_PRIV)); then
        # The one excused empty run: a privileged tier whose tests all skipped for lack of root.
        note="all skipped: not root"
    elif ((ran == 0)); then
        note="ran no tests"
        ((skipped)) && note="ran no tests (all $skipped skipped)"
        extra_failed=1
        PROBLEMS+=("[$label] tier $tier ran no tests ($skipped skipped): a tier that runs nothing is a failure")
    elif ((rc == 124 || rc == 137)); then
        note="timed out after ${TIER_TIMEOUT}s"
        extra_failed=1
        PROBLEMS+=("[$label] tier $tier: $note")
    elif ((rc != 0 && failed == 0)); then
        note="ctest exited $rc"
        extra_failed=1
        PROBLEMS+=("[$label] tier $tier: ctest exited $rc although no test failed")
    fi
    if ((failed)); then
        PROBLEMS+=("[$label] tier $tier: $failed failed: ${failed_names[*]}")
    fi
    if ((REQUIRE_PRIV && skipped)) && [[ $tier == bpf || $tier == e2e ]]; then
        note="${note:+$note; }skipped under KXLB_REQUIRE_PRIVILEGED=1"
        extra_failed=1
        PROBLEMS+=("[$label] tier $tier: $skipped test(s) skipped although KXLB_REQUIRE_PRIVILEGED=1: ${skipped_names[*]}")
    fi
    add_row "$label" "$tier" "$passed" "$((failed + extra_failed))" "$skipped" "$note"
}

# test_build <label> <dir> <build type> [cmake args...]
test_build() {
    local label=$1 dir=$2 type=$3
    shift 3
    if ! build_tree "$label" "$dir" "$type" "$@"; then
        add_row "$label" "build" 0 1 0 "configure/build failed ($dir)"
        PROBLEMS+=("[$label] build in $dir failed: its tiers did not run")
        local t
        for t in "${TIERS[@]}"; do
            add_row "$label" "$t" - - - "not run: build failed"
        done
        return
    fi
    local t
    for t in "${TIERS[@]}"; do
        run_tier "$label" "$dir" "$t"
    done
}

RUN_ENV=(env) # extra environment for the build and test commands of the current pass
test_build regular "$BUILD_DIR" RelWithDebInfo

if [[ $SKIP_ASAN == 1 ]]; then
    for t in "${TIERS[@]}"; do
        add_row asan "$t" - - - "skipped ($SKIP_ASAN_WHY)"
    done
else
    RUN_ENV=(env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
    test_build asan "$ASAN_BUILD_DIR" "$ASAN_BUILD_TYPE" -DKXLB_SANITIZE=ON
fi

# ---- summary -------------------------------------------------------------------------------------
echo
echo "================================ kxlb test summary ================================"
printf '%-8s | %-6s | %6s | %6s | %7s | %s\n' build tier passed failed skipped note
printf '%s\n' "---------+--------+--------+--------+---------+------------------------------------"
for row in "${ROWS[@]}"; do
    IFS='|' read -r b t p f s n <<<"$row"
    printf '%-8s | %-6s | %6s | %6s | %7s | %s\n' "$b" "$t" "$p" "$f" "$s" "$n"
done
printf '%s\n' "---------+--------+--------+--------+---------+------------------------------------"
printf '%-8s | %-6s | %6s | %6s | %7s |\n' total "" "$TOTAL_PASSED" "$TOTAL_FAILED" "$TOTAL_SKIPPED"
if ((${#PROBLEMS[@]})); then
    echo
    echo "FAILED:"
    printf '  - %s\n' "${PROBLEMS[@]}"
else
    echo
    echo "OK"
fi
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
((${#PROBLEMS[@]} == 0))
