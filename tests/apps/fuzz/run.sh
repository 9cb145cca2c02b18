#!/usr/bin/env bash
# Builds the libFuzzer target of the kvcache protocol (fuzz_kvcache_proto:
# parser and executor, whole input against the same input in small chunks)
# with clang, AddressSanitizer and UndefinedBehaviorSanitizer in build-fuzz/
# (the build tests/net/fuzz/run.sh also uses), and runs it for
# HY_FUZZ_SECONDS (default 30) from the seeds in tests/apps/fuzz/corpus/.
# Exit: 0 clean, 1 a crash (input left in build-fuzz/kvfuzz-artifacts/) or a
# build failure, 77 when clang with libFuzzer cannot be had here.
# HY_FUZZ_ONLY=build or =run: only builds, or only runs what a build left
# (as in tests/net/fuzz/run.sh).
set -uo pipefail
cd "$(dirname "$0")/../../.."

SECONDS_TO_RUN=${HY_FUZZ_SECONDS:-30}
BUILD=build-fuzz

skip() {
    echo "fuzz: skipped: $*" >&2
    exit 77
}

command -v clang >/dev/null 2>&1 || skip "clang is not installed"
d=$(mktemp -d)
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$d/t.c"
clang -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1 || { rm -rf "$d"; skip "clang has no libFuzzer runtime (libclang-rt-dev)"; }
rm -rf "$d"

case ${HY_FUZZ_ONLY:-} in
"" | build | run) ;;
*) echo "fuzz: HY_FUZZ_ONLY is build or run, not $HY_FUZZ_ONLY" >&2; exit 1 ;;
esac
if [ "${HY_FUZZ_ONLY:-}" != run ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
        slog=$(mktemp "${TMPDIR:-/tmp}/hydra-kvfuzz-setup.XXXXXX")
        CC=clang meson setup "$BUILD" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
            -Db_lundef=false -Ddpdk=disabled -Dc_args=-fsanitize=fuzzer-no-link >"$slog" 2>&1 ||
            { cat "$slog"; rm -f "$slog"; echo "fuzz: meson setup failed" >&2; exit 1; }
        rm -f "$slog"
    fi
    ninja -C "$BUILD" tests/apps/fuzz/fuzz_kvcache_proto >"$BUILD/kvfuzz-build.log" 2>&1 ||
        { tail -40 "$BUILD/kvfuzz-build.log"; echo "fuzz: build failed" >&2; exit 1; }
fi
[ "${HY_FUZZ_ONLY:-}" = build ] && exit 0
[ -x "$BUILD/tests/apps/fuzz/fuzz_kvcache_proto" ] || { echo "fuzz: $BUILD/tests/apps/fuzz/fuzz_kvcache_proto is not built (HY_FUZZ_ONLY=build first)" >&2; exit 1; }

work="$BUILD/kvfuzz-corpus"
art="$BUILD/kvfuzz-artifacts"
mkdir -p "$work" "$art"
# (in this checkout's build-fuzz/: runs in two checkouts side by side keep
# their logs apart)
log=$BUILD/kvfuzz.log
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$BUILD/tests/apps/fuzz/fuzz_kvcache_proto" -max_total_time="$SECONDS_TO_RUN" -timeout=20 \
    -max_len=200000 -artifact_prefix="$art/" -print_final_stats=1 "$work" tests/apps/fuzz/corpus >"$log" 2>&1
rc=$?
grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)" "$log" | sed 's/^/   /'
if [ $rc -ne 0 ]; then
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|deadly" "$log" | head -20
    echo "fuzz: crash (exit $rc), full log in $log; inputs in $art/" >&2
    exit 1
fi
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$log" | sed 's/^/   /'
exit 0
