# Shared by scripts/run, scripts/test and scripts/bench: installs what the
# project needs from Debian's archive when it is missing. Idempotent.

HYDRA_PACKAGES="meson ninja-build pkg-config gcc g++ libc6-dev libnuma-dev libcmocka-dev dpdk-dev libdpdk-dev libsodium-dev iproute2 liburing-dev libseccomp-dev libdw-dev"
# hydra-kvcache's peers and clients: the reference server, memccapable and
# the memc* tools, a client library for the tests, nc for trying it by hand
HYDRA_PACKAGES="$HYDRA_PACKAGES memcached libmemcached-tools python3-pymemcache netcat-openbsd"
# the node console's real clients: promtool, a WebSocket client, headless Chromium
HYDRA_PACKAGES="$HYDRA_PACKAGES prometheus python3-websockets python3-selenium chromium chromium-driver"

hy_need_root_for_apt() {
    if [ "$(id -u)" != 0 ]; then
        echo "scripts: missing packages ($*) and not root: install them with apt-get" >&2
        exit 1
    fi
}

# hy_install PKG...: installs the packages that dpkg does not know as installed.
hy_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    hy_need_root_for_apt "${missing[@]}"
    echo "scripts: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# hy_build DIR [meson options...]: configures (once) and builds DIR, quietly;
# on failure prints what failed (the compiler's errors) and returns 1. The
# whole output is kept in DIR/hydra-build.log.
hy_build() {
    local dir=$1
    shift
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/hydra-build.XXXXXX")
    hy_build_setup "$dir" "$log" "$@" || return 1
    ninja -C "$dir" >>"$log" 2>&1 || { hy_build_failed "ninja -C $dir" "$log"; return 1; }
    mv -f "$log" "$dir/hydra-build.log" 2>/dev/null || rm -f "$log"
}

# hy_build_setup DIR LOG [meson options...]: meson setup DIR the first
# time, meson configure when options are given later; output to LOG; on
# failure prints what failed and returns 1
hy_build_setup() {
    local dir=$1 log=$2
    shift 2
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$log" 2>&1 || { hy_build_failed "meson setup $dir $*" "$log"; return 1; }
    elif [ $# -gt 0 ]; then
        meson configure "$dir" "$@" >"$log" 2>&1 ||
            { hy_build_failed "meson configure $dir $*" "$log"; return 1; }
    fi
    return 0
}

# hy_build_tests DIR [meson options...]: as hy_build, but builds only what
# DIR's tests run (their executables and the programs they name as
# depends), not the apps, benchmarks and header checks a sanitizer build
# does not run.
hy_build_tests() {
    local dir=$1
    shift
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/hydra-build.XXXXXX")
    hy_build_setup "$dir" "$log" "$@" || return 1
    local targets what
    what="meson introspect $dir (the tests' targets)"
    targets=$(hy_test_targets "$dir" 2>>"$log") && [ -n "$targets" ] ||
        { hy_build_failed "$what" "$log"; return 1; }
    what="ninja -C $dir (the tests' targets)"
    # shellcheck disable=SC2086
    ninja -C "$dir" $targets >>"$log" 2>&1 || { hy_build_failed "$what" "$log"; return 1; }
    mv -f "$log" "$dir/hydra-build.log" 2>/dev/null || rm -f "$log"
}

# hy_test_targets DIR: the ninja targets (paths below DIR) that DIR's tests
# need: each test's program when it is built here, and its depends.
hy_test_targets() {
    local dir=$1
    (cd "$dir" && meson introspect --tests --targets) | /usr/bin/python3 -c '
import json, os, sys
d = json.load(sys.stdin)
files = {t["id"]: t["filename"] for t in d["targets"]}
byfile = {f for t in d["targets"] for f in t["filename"]}
out = set()
for t in d["tests"]:
    out.update(f for f in t["cmd"][:1] if f in byfile)
    for dep in t["depends"]:
        out.update(files.get(dep, []))
root = os.path.realpath(sys.argv[1])
for f in sorted(out):
    print(os.path.relpath(os.path.realpath(f), root))
' "$dir"
}

# hy_build_failed WHAT LOG: shows why a build failed: from ninja's first
# FAILED line on (at most 200 lines), else the end of the log.
hy_build_failed() {
    echo "scripts: $1 failed:" >&2
    if grep -q '^FAILED:' "$2"; then
        sed -n '/^FAILED:/,$p' "$2" | head -n 200 >&2
    else
        tail -n 100 "$2" >&2
    fi
    rm -f "$2"
}

# Stacks: guarded mode maps two regions per process; 1 M processes need more
# than the kernel's default 65530 maps.
hy_raise_map_count() {
    local want=4194304
    local cur
    cur=$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)
    if [ "$cur" -lt "$want" ] && [ "$(id -u)" = 0 ]; then
        sysctl -qw vm.max_map_count=$want 2>/dev/null || true
    fi
}
