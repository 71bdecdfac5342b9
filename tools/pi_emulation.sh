#!/usr/bin/env bash
# Emulated Raspberry Pi OS: Debian bookworm root filesystems for 64-bit (arm64) and 32-bit
# (armhf) ARM, run through qemu user-mode emulation, with edgecnn's runtime installed.
#
#   bash tools/pi_emulation.sh build [arm64|armhf ...]    # build or refresh (default: both)
#   bash tools/pi_emulation.sh run ARCH [--bind DIR[:INSIDE]]... CMD [ARG...]
#   bash tools/pi_emulation.sh status | clean
#
# As root (or through sudo) on Debian or Ubuntu. `build` installs qemu-user-static,
# binfmt-support and debootstrap with apt, enables the binfmt handlers, and caches each
# root filesystem in ${EDGECNN_PI_CACHE:-~/.cache/edgecnn/pi}. A rerun only reinstalls
# edgecnn when the runtime's code changed. The emulated systems never touch the network:
# the wheels they need are downloaded on this host and installed with --no-index.
#
# Inside, /opt/edgecnn is a venv (first on PATH, so `python3` is the venv's): that is how
# Raspberry Pi OS bookworm wants pip packages installed (PEP 668). On armhf it sees the
# system site-packages, because numpy there is Debian's python3-numpy: numpy publishes no
# 32-bit ARM wheels.
#
# `run` starts CMD in a private mount namespace with a fresh /proc inside the root
# filesystem, and bind-mounts each --bind DIR at the same path inside; the mounts vanish
# with the process. /sys is deliberately not mounted: onnxruntime's CPU detection
# segfaults under qemu when it can read it. qemu emulates the CPU of a Raspberry Pi 4
# (EDGECNN_PI_CPU overrides it; `qemu-aarch64-static -cpu help` lists the choices).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# Bump when anything below that shapes a root filesystem changes: it forces a rebuild.
SCRIPT_VERSION=1
SUITE=bookworm
# The wheels inside, pinned so that a cached root filesystem says exactly what it holds.
ARM64_WHEELS=(numpy==2.4.6 ai-edge-litert==2.3.0 onnxruntime==1.32.0)
ARMHF_WHEELS=(tflite-runtime==2.14.0)
CACHE=${EDGECNN_PI_CACHE:-$HOME/.cache/edgecnn/pi}
VENV=/opt/edgecnn

log() { echo "==> $*" >&2; }
die() {
    echo "pi_emulation: $*" >&2
    exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

usage() {
    sed -n '5,7p' "$0" | sed 's/^# *//' >&2
    exit 2
}

# The Raspberry Pi 4's Cortex-A72 for 64-bit. qemu-arm has no A72: its Cortex-A15 is the
# closest to an A72 in 32-bit mode (NEON and VFPv4; qemu-arm's default "max" would add
# ARMv8.2 dot-product instructions that a Pi 4 does not have).
default_cpu() { case "$1" in arm64) echo cortex-a72 ;; armhf) echo cortex-a15 ;; esac; }
qemu_name() { case "$1" in arm64) echo qemu-aarch64 ;; armhf) echo qemu-arm ;; esac; }
machine_of() { case "$1" in arm64) echo aarch64 ;; armhf) echo armv7l ;; esac; }
check_arch() { case "$1" in arm64 | armhf) ;; *) die "unknown architecture '$1' (arm64 or armhf)" ;; esac; }

# --- host tools --------------------------------------------------------------------------

host_python() {
    # pip download and pip wheel only: the project's venv if there is one, else python3.
    if [ -x "$REPO/.venv/bin/python" ]; then echo "$REPO/.venv/bin/python"; else echo python3; fi
}

install_host_tools() {
    local missing=() pkg
    for pkg in qemu-user-static binfmt-support debootstrap debian-archive-keyring; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    "$(host_python)" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
    fi
}

enable_binfmt() {
    local dir=/proc/sys/fs/binfmt_misc name
    [ -e "$dir/register" ] || as_root mount -t binfmt_misc binfmt_misc "$dir"
    for name in qemu-aarch64 qemu-arm; do
        if [ ! -e "$dir/$name" ]; then
            as_root update-binfmts --import "$name" >/dev/null 2>&1 || true
            as_root update-binfmts --enable "$name" >/dev/null 2>&1 || true
        fi
        grep -qx enabled "$dir/$name" 2>/dev/null || die "binfmt handler $name is not enabled"
        # Without the F (fix binary) flag the kernel would look for the interpreter inside
        # the chroot; Debian's qemu-user-static registers it with F.
        grep -q '^flags:.*F' "$dir/$name" || die "binfmt handler $name lacks the F flag"
    done
}

# The Debian mirror apt on this host uses (deb822 .sources or one-line sources.list),
# skipping security and non-Debian archives; deb.debian.org if there is none.
debian_mirror() {
    if [ -n "${EDGECNN_PI_MIRROR:-}" ]; then
        echo "$EDGECNN_PI_MIRROR"
        return
    fi
    local found
    found=$(
        {
            cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p'
        } | grep -E '^https?://.*/debian/?$' | grep -v security | head -n1
    ) || true
    echo "${found:-http://deb.debian.org/debian}"
}

# debootstrap fetches with wget, which ignores apt's proxy setting: pass it on.
apt_proxy() {
    local http_proxy_apt=""
    eval "$(apt-config shell http_proxy_apt Acquire::http::Proxy 2>/dev/null)" || true
    if [ -n "$http_proxy_apt" ] && [ -z "${http_proxy:-}" ]; then
        export http_proxy=$http_proxy_apt
    fi
}

# --- wheels ------------------------------------------------------------------------------

# pip does not widen manylinux_2_X platform tags as it does manylinux2014's, so list every
# glibc up to bookworm's 2.36 (manylinux2014_aarch64 alone finds no ai-edge-litert).
platform_args() {
    local machine=$1 minor
    for minor in $(seq 17 36); do echo "--platform=manylinux_2_${minor}_${machine}"; done
    echo "--platform=manylinux2014_${machine}"
    echo "--platform=linux_${machine}"
}

# download_wheels ARCH DEST [REQUIREMENT...]: wheels for bookworm's CPython 3.11 on ARCH;
# by default the ones its root filesystem is built with.
download_wheels() {
    local arch=$1 dest=$2 machine
    shift 2
    machine=$(machine_of "$arch")
    local -a wanted=("$@")
    if [ ${#wanted[@]} -eq 0 ]; then
        if [ "$arch" = arm64 ]; then wanted=("${ARM64_WHEELS[@]}"); else wanted=("${ARMHF_WHEELS[@]}"); fi
    fi
    log "$arch: pip download ${wanted[*]} for $machine"
    mapfile -t platforms < <(platform_args "$machine")
    # On armhf numpy is Debian's, and no numpy wheel exists to download: pass --no-deps
    # there; tflite-runtime and edgecnn's other requirements need nothing else from it.
    local -a extra=()
    [ "$arch" = armhf ] && [ $# -eq 0 ] && extra=(--no-deps)
    "$(host_python)" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 \
        "${extra[@]}" -d "$dest" "${wanted[@]}"
}

# The runtime's code and this script, hashed: the installed edgecnn is replaced when
# either changes.
source_hash() {
    (cd "$REPO" && find edgecnn runtime pyproject.toml tools/pi_emulation.sh -type f \
        \( -name '*.py' -o -name '*.toml' -o -name '*.sh' -o -name py.typed \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# edgecnn's wheel (pure Python, built on the host) and, downloaded for the target's
# platform, its other requirements (typer and what it needs; numpy is already inside).
build_edgecnn_wheels() {
    local arch=$1 dest=$2 tmp=$2.tmp requirements
    rm -rf "$tmp" && mkdir -p "$tmp"
    "$(host_python)" -m pip wheel -q --disable-pip-version-check --no-deps -w "$tmp" "$REPO" >/dev/null
    # Its unconditional requirements (extras carry a marker), numpy aside.
    requirements=$("$(host_python)" -c '
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(name).decode())
reqs = meta.get_all("Requires-Dist") or []
print(" ".join(r for r in reqs if ";" not in r and not r.startswith("numpy")))
' "$tmp"/edgecnn-*.whl)
    # shellcheck disable=SC2086 # one requirement per word
    [ -z "$requirements" ] || download_wheels "$arch" "$tmp" $requirements
    rm -rf "$dest" && mv "$tmp" "$dest"
}

# --- root filesystems --------------------------------------------------------------------

rootfs_recipe() {
    local arch=$1
    if [ "$arch" = arm64 ]; then
        echo "v$SCRIPT_VERSION $SUITE $arch ${ARM64_WHEELS[*]}"
    else
        echo "v$SCRIPT_VERSION $SUITE $arch python3-numpy ${ARMHF_WHEELS[*]}"
    fi
}

# in_root ROOT ARCH [--bind SRC[:DEST]]... CMD...: runs CMD inside ROOT (see the header)
# on ARCH's emulated CPU. Each --bind mounts host directory SRC at DEST (default: the same
# path) inside; mount points it creates are removed afterwards, so runs leave the root
# filesystem as they found it.
in_root() {
    local root=$1 cpu=${EDGECNN_PI_CPU:-$(default_cpu "$2")}
    shift 2
    local -a binds=() created=()
    local src dest top
    while [ "${1:-}" = --bind ]; do
        src=$(realpath -m "${2%%:*}")
        dest=${2#*:}
        [ "$dest" = "$2" ] && dest=$src
        [ -d "$src" ] || die "--bind $src: not a directory"
        top=$dest
        while [ ! -e "$root$(dirname "$top")" ]; do top=$(dirname "$top"); done
        [ -e "$root$top" ] || created+=("$root$top")
        as_root mkdir -p "$root$dest"
        binds+=("$src" "$dest")
        shift 2
    done
    # QEMU_CPU is read by qemu at every exec, so it must survive env -i.
    local script='root=$1 cpu=$2 n=$3; shift 3
        for _ in $(seq 1 "$n"); do mount --bind "$1" "$root$2" || exit 1; shift 2; done
        exec chroot "$root" /usr/bin/env -i QEMU_CPU="$cpu" HOME=/root LANG=C.UTF-8 \
            PATH='"$VENV"'/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"'
    # In the background so that a TERM or INT (a timeout, Ctrl-C) can end it: unshare
    # ignores both while it waits, and the command, pid 1 of its namespace, ignores them
    # too. A KILL to unshare makes --kill-child end the namespace instead of orphaning it.
    local -a sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" env QEMU_CPU="$cpu" unshare --mount --propagation private --pid --kill-child \
        --mount-proc="$root/proc" sh -c "$script" sh "$root" "$cpu" $((${#binds[@]} / 2)) \
        "${binds[@]}" "$@" <&0 &
    local pid=$! status=0
    trap 'kill -KILL "$pid" 2>/dev/null' TERM INT
    wait "$pid" || status=$?
    while kill -0 "$pid" 2>/dev/null; do
        status=0
        wait "$pid" || status=$?
    done
    trap - TERM INT
    for top in "${created[@]}"; do
        [ ! -d "$top" ] || as_root find "$top" -depth -type d -empty -delete
    done
    return "$status"
}

build_rootfs() {
    local arch=$1 target=$CACHE/$1
    local recipe stamp=$CACHE/$1/.edgecnn-rootfs
    recipe=$(rootfs_recipe "$arch")
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$recipe" ]; then
        return
    fi
    local start=$SECONDS mirror include
    mirror=$(debian_mirror)
    include=python3,python3-venv
    [ "$arch" = armhf ] && include=$include,python3-numpy
    # Built beside the target and renamed when complete, so that an interrupted build
    # never leaves a root filesystem that looks finished.
    local tmp=$CACHE/.$arch.building
    as_root rm -rf "$tmp" && mkdir -p "$tmp/root" "$tmp/wheels"
    log "$arch: debootstrap $SUITE from $mirror (several minutes under emulation)"
    apt_proxy
    as_root debootstrap --arch="$arch" --variant=minbase --include="$include" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $tmp/debootstrap.log"
    as_root chroot "$tmp/root" apt-get clean
    download_wheels "$arch" "$tmp/wheels"
    log "$arch: installing the wheels into $VENV"
    local venv_args=()
    [ "$arch" = armhf ] && venv_args=(--system-site-packages)
    # Debian's python3 here: the venv's own is first on PATH only once it exists.
    in_root "$tmp/root" "$arch" python3 -m venv "${venv_args[@]}" "$VENV"
    in_root "$tmp/root" "$arch" --bind "$tmp/wheels:/mnt/wheels" python3 -m pip install -q \
        --disable-pip-version-check --no-index --find-links /mnt/wheels \
        $(cd "$tmp/wheels" && printf '/mnt/wheels/%s ' *.whl)
    echo "$recipe" | as_root tee "$tmp/root/.edgecnn-rootfs" >/dev/null
    as_root rm -rf "$target"
    as_root mv "$tmp/root" "$target"
    as_root rm -rf "$tmp"
    log "$arch: root filesystem built in $((SECONDS - start)) s"
}

install_edgecnn() {
    local arch=$1 root=$CACHE/$1 hash stamp=$CACHE/$1/.edgecnn-wheel
    hash=$(source_hash)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
        return
    fi
    local wheels=$CACHE/.edgecnn-$hash-$arch
    [ -d "$wheels" ] || build_edgecnn_wheels "$arch" "$wheels"
    log "$arch: installing edgecnn ($hash)"
    # As `pip install edgecnn` would on a device, minus the network: same version number,
    # new code, so the old one goes first.
    in_root "$root" "$arch" --bind "$wheels:/mnt/wheels" sh -c '
        python3 -m pip uninstall -q -y edgecnn 2>/dev/null
        exec python3 -m pip install -q --disable-pip-version-check --no-index \
            --find-links /mnt/wheels /mnt/wheels/edgecnn-*.whl'
    echo "$hash" | as_root tee "$stamp" >/dev/null
}

cmd_build() {
    local arches=("$@") arch
    [ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
    for arch in "${arches[@]}"; do check_arch "$arch"; done
    install_host_tools
    enable_binfmt
    mkdir -p "$CACHE"
    for arch in "${arches[@]}"; do
        build_rootfs "$arch"
        install_edgecnn "$arch"
    done
    # Wheels of older runtime code are no longer needed.
    find "$CACHE" -maxdepth 1 -name '.edgecnn-*' ! -name ".edgecnn-$(source_hash)-*" \
        -exec rm -rf {} +
}

cmd_run() {
    [ $# -ge 2 ] || usage
    local arch=$1
    shift
    check_arch "$arch"
    [ -f "$CACHE/$arch/.edgecnn-rootfs" ] || die "no $arch root filesystem: run '$0 build $arch'"
    [ -e "/proc/sys/fs/binfmt_misc/$(qemu_name "$arch")" ] || enable_binfmt
    in_root "$CACHE/$arch" "$arch" "$@"
}

cmd_status() {
    local arch
    for arch in arm64 armhf; do
        if [ -f "$CACHE/$arch/.edgecnn-rootfs" ]; then
            echo "$arch: $(cat "$CACHE/$arch/.edgecnn-rootfs"); edgecnn" \
                "$(cat "$CACHE/$arch/.edgecnn-wheel" 2>/dev/null || echo 'not installed')" \
                "(current $(source_hash)); $(du -sh "$CACHE/$arch" | cut -f1)"
        else
            echo "$arch: not built"
        fi
    done
}

case "${1:-}" in
build) shift && cmd_build "$@" ;;
run) shift && cmd_run "$@" ;;
status) cmd_status ;;
clean) as_root rm -rf "$CACHE" ;;
*) usage ;;
esac
