#!/usr/bin/env bash
# Check or fix the formatting of kxlb's C/C++ sources with clang-format (style files: .clang-format
# at the root for C++, bpf/.clang-format and include/.clang-format for kernel-style C).
#
#   scripts/format.sh [--check]   report files that need formatting; exit 1 if any (default)
#   scripts/format.sh --fix       rewrite them in place
#   scripts/format.sh -h|--help
#
# Files: git-tracked (plus new, not ignored) *.c *.h *.cpp *.hpp under bpf/ include/ userspace/ tests/.
# CLANG_FORMAT overrides the binary (default: clang-format, else clang-format-14).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=check
for arg in "$@"; do
    case "$arg" in
        --check) mode=check ;;
        --fix) mode=fix ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *)
            echo "format.sh: unknown argument: $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

cf=${CLANG_FORMAT:-}
if [[ -z $cf ]]; then
    for c in clang-format clang-format-14; do
        if command -v "$c" >/dev/null; then
            cf=$c
            break
        fi
    done
fi
if [[ -z $cf ]] || ! command -v "$cf" >/dev/null; then
    echo "format.sh: clang-format not found (scripts/install-deps.sh installs it)" >&2
    exit 2
fi

# Tracked files plus new files not yet added (but never ignored ones such as build dirs); outside a
# git checkout (e.g. an unpacked tarball), every matching file under the four directories.
list_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- \
            'bpf/*.c' 'bpf/*.h' 'include/*.h' \
            'userspace/*.cpp' 'userspace/*.hpp' 'userspace/*.h' 'userspace/*.c' \
            'tests/*.cpp' 'tests/*.hpp' 'tests/*.h' 'tests/*.c'
    else
        find bpf include userspace tests -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) \
            2>/dev/null | grep -Ev '^include/.*\.(c|cpp|hpp)$' || true
    fi
}
mapfile -t files < <(list_sources | grep -Ev '(^|/)(build|build-[^/]*|cmake-build-[^/]*)/' | sort -u)

existing=()
for f in "${files[@]}"; do
    [[ -f $f ]] && existing+=("$f") # skip files deleted in the work tree but still tracked
done
if ((${#existing[@]} == 0)); then
    echo "format.sh: no C/C++ sources found" >&2
    exit 0
fi

if [[ $mode == fix ]]; then
    "$cf" -i --style=file "${existing[@]}"
    echo "format.sh: formatted ${#existing[@]} file(s) with $("$cf" --version | head -1)"
    exit 0
fi

bad=()
for f in "${existing[@]}"; do
    if ! "$cf" --dry-run -Werror --style=file "$f" >/dev/null 2>&1; then
        bad+=("$f")
    fi
done
if ((${#bad[@]})); then
    echo "format.sh: ${#bad[@]} of ${#existing[@]} file(s) need formatting (run scripts/format.sh --fix):"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
echo "format.sh: all ${#existing[@]} file(s) formatted"
