# Shared by scripts/run, scripts/test and scripts/bench: installs what the
# project needs from Debian's archive when it is missing. Idempotent.

HYDRA_PACKAGES="meson ninja-build pkg-config gcc libc6-dev libnuma-dev libcmocka-dev dpdk-dev libdpdk-dev libsodium-dev iproute2 liburing-dev libseccomp-dev prometheus python3-websockets python3-selenium chromium chromium-driver"

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

# hy_build DIR [meson options...]: configures (once) and builds DIR.
hy_build() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
    else
        meson configure "$dir" "$@" >/dev/null 2>&1 || true
    fi
    ninja -C "$dir" >/dev/null
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
