#!/usr/bin/env bash
# Builds the libFuzzer target of net/ (fuzz_dist: the frame decoder and a
# channel's receive path, see fuzz_dist.c) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/, and runs it for
# HY_FUZZ_SECONDS (default 60) from the seeds in tests/net/fuzz/corpus/.
# Installs clang and its libFuzzer runtime when missing (Debian: clang and
# libclang-rt-<version>-dev). Exit: 0 clean, 1 a crash (its input is left in
# build-fuzz/fuzz-artifacts/: fix the bug, then add the input to corpus/) or
# a build failure, 77 when clang with libFuzzer cannot be had here.
# HY_FUZZ_ONLY=build: only builds (exit 0: built); HY_FUZZ_ONLY=run: only
# runs what such a build left (exit 1 when it is missing), so that
# scripts/test builds the two fuzz targets one after the other in build-fuzz
# and runs the fuzzers side by side.
set -uo pipefail
cd "$(dirname "$0")/../../.."

SECONDS_TO_RUN=${HY_FUZZ_SECONDS:-60}
BUILD=build-fuzz

skip() {
    echo "fuzz: skipped: $*" >&2
    exit 77
}

apt_install() {
    [ "$(id -u)" = 0 ] || return 1
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 && return 0
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

have_libfuzzer() {
    local d
    d=$(mktemp -d) || return 1
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$d/t.c"
    clang -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1
    local rc=$?
    rm -rf "$d"
    return $rc
}

if ! command -v clang >/dev/null 2>&1; then
    apt_install clang || skip "clang is not installed and could not be installed (apt-get, root)"
fi
if ! have_libfuzzer; then
    major=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
    apt_install "libclang-rt-${major}-dev" ||
        skip "clang $major has no libFuzzer runtime and libclang-rt-${major}-dev could not be installed"
    have_libfuzzer || skip "clang -fsanitize=fuzzer does not link even with libclang-rt-${major}-dev"
fi

# logs of this run: its own directory (runs side by side do not mix them)
logs=$(mktemp -d "${TMPDIR:-/tmp}/hydra-fuzz.XXXXXX")
case ${HY_FUZZ_ONLY:-} in
"" | build | run) ;;
*) echo "fuzz: HY_FUZZ_ONLY is build or run, not $HY_FUZZ_ONLY" >&2; exit 1 ;;
esac
if [ "${HY_FUZZ_ONLY:-}" != run ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
        # the whole library is instrumented for coverage (fuzzer-no-link), so the
        # fuzzer is guided through core/'s signal handlers too; only the fuzz
        # target is built here
        CC=clang meson setup "$BUILD" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
            -Db_lundef=false -Ddpdk=disabled -Dc_args=-fsanitize=fuzzer-no-link >"$logs/setup.log" 2>&1 ||
            { cat "$logs/setup.log"; echo "fuzz: meson setup failed" >&2; exit 1; }
    fi
    ninja -C "$BUILD" tests/net/fuzz/fuzz_dist >"$logs/build.log" 2>&1 ||
        { tail -40 "$logs/build.log"; echo "fuzz: build failed" >&2; exit 1; }
fi
[ "${HY_FUZZ_ONLY:-}" = build ] && exit 0
[ -x "$BUILD/tests/net/fuzz/fuzz_dist" ] || { echo "fuzz: $BUILD/tests/net/fuzz/fuzz_dist is not built (HY_FUZZ_ONLY=build first)" >&2; exit 1; }

work="$BUILD/fuzz-corpus"    # what this machine's runs found (kept between runs)
art="$BUILD/fuzz-artifacts"
mkdir -p "$work" "$art"
log=$logs/fuzz.log
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$BUILD/tests/net/fuzz/fuzz_dist" -max_total_time="$SECONDS_TO_RUN" -timeout=20 \
    -artifact_prefix="$art/" -print_final_stats=1 "$work" tests/net/fuzz/corpus >"$log" 2>&1
rc=$?
grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)" "$log" | sed 's/^/   /'
if [ $rc -ne 0 ]; then
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -20
    echo "fuzz: crash (exit $rc), full log in $log; inputs in $art/" >&2
    exit 1
fi
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$log" | sed 's/^/   /'
exit 0
