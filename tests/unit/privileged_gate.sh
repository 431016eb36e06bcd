#!/usr/bin/env bash
# Proves the privileged-test gate with the real bpf test binary, run as a non-root user:
#   1. with KXLB_REQUIRE_PRIVILEGED=1 it must exit non-zero and say
#      "KXLB_REQUIRE_PRIVILEGED=1 forbids skipping";
#   2. without the variable it must exit 0 and report skipped tests ("[  SKIPPED ]").
# Run by ctest as unit.privileged_gate_fails_for_non_root:  privileged_gate.sh <kxlb_bpf_tests>
# As root it drops to nobody (65534) with setpriv; the binary is copied to a fresh 0755 temp dir first,
# since the build tree may sit where nobody cannot reach (e.g. under /root).
set -euo pipefail

TIMEOUT_S=${KXLB_GATE_TIMEOUT:-40} # per run; ctest's own limit for this test is 60 s

fail() {
    echo "privileged_gate: FAIL: $*" >&2
    exit 1
}

(($# == 1)) || fail "usage: $0 <path to kxlb_bpf_tests>"
bin=$1
[[ -f $bin && -x $bin ]] || fail "not an executable file: $bin"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kxlb-gate.XXXXXX")
cleanup() { rm -rf -- "$tmp"; }
trap cleanup EXIT
chmod 0755 "$tmp"
cp -- "$bin" "$tmp/kxlb_bpf_tests"
chmod 0755 "$tmp/kxlb_bpf_tests"

# run_unprivileged <require: 1|unset> <output file>: runs the copy as non-root; prints its exit code.
run_unprivileged() {
    local require=$1 out=$2
    local -a envv=(env -u KXLB_REQUIRE_PRIVILEGED)
    [[ $require == 1 ]] && envv+=(KXLB_REQUIRE_PRIVILEGED=1)
    # HOME/TMPDIR point somewhere nobody may write; no colour codes in the output we grep.
    envv+=(HOME="$tmp" TMPDIR="$tmp" GTEST_COLOR=no)
    local -a cmd=("${envv[@]}" timeout --kill-after=5 "$TIMEOUT_S" "$tmp/kxlb_bpf_tests")
    if ((EUID == 0)); then
        command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed to drop root"
        cmd=(setpriv --reuid=65534 --regid=65534 --clear-groups -- "${cmd[@]}")
    fi
    local rc=0
    (cd "$tmp" && "${cmd[@]}") >"$out" 2>&1 || rc=$?
    echo "$rc"
}

show() { sed 's/^/    | /' "$1" | tail -n 40 >&2; }

# 1. Required but unprivileged: must fail loudly, not skip.
out1=$tmp/required.log
rc1=$(run_unprivileged 1 "$out1")
if ((rc1 == 124 || rc1 == 137)); then
    show "$out1"
    fail "kxlb_bpf_tests timed out after ${TIMEOUT_S}s as non-root with KXLB_REQUIRE_PRIVILEGED=1"
fi
if ((rc1 == 0)); then
    show "$out1"
    fail "kxlb_bpf_tests exited 0 as non-root with KXLB_REQUIRE_PRIVILEGED=1 (expected a failure)"
fi
grep -qF "KXLB_REQUIRE_PRIVILEGED=1 forbids skipping" "$out1" || {
    show "$out1"
    fail "exit $rc1 as non-root with KXLB_REQUIRE_PRIVILEGED=1, but no 'KXLB_REQUIRE_PRIVILEGED=1 forbids skipping' message"
}
echo "privileged_gate: ok: non-root + KXLB_REQUIRE_PRIVILEGED=1 -> exit $rc1 with the 'forbids skipping' message"

# 2. Not required and unprivileged: tests skip, binary succeeds.
out2=$tmp/optional.log
rc2=$(run_unprivileged unset "$out2")
if ((rc2 != 0)); then
    show "$out2"
    fail "kxlb_bpf_tests exited $rc2 as non-root without KXLB_REQUIRE_PRIVILEGED (expected 0 with skipped tests)"
fi
nskip=$(grep -cE '^\[  SKIPPED \] [^ ]+\.[^ ]+ \(' "$out2" || true)
if ((nskip == 0)); then
    show "$out2"
    fail "kxlb_bpf_tests exited 0 as non-root but reported no '[  SKIPPED ]' test"
fi
echo "privileged_gate: ok: non-root without the variable -> exit 0, $nskip test(s) skipped"
