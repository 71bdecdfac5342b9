#!/usr/bin/env bash
# Emulated Raspberry Pi OS: Debian root filesystems for 64-bit (arm64) and 32-bit (armhf)
# ARM, run through qemu user-mode emulation; edgecnn goes in from a device bundle.
#
#   bash tools/pi_emulation.sh build [SYSTEM ...]         # build or refresh (default: arm64 armhf)
#   bash tools/pi_emulation.sh install SYSTEM BUNDLE [VENV] # run the bundle's install.sh inside
#   bash tools/pi_emulation.sh run SYSTEM [--bind DIR[:INSIDE]]... CMD [ARG...]
#   bash tools/pi_emulation.sh status                     # or: clean
#
# SYSTEM is arm64 or armhf (bookworm, Python 3.11), arm64-trixie or armhf-trixie (trixie,
# Python 3.13).
#
# As root (or through sudo) on Debian or Ubuntu. `build` installs qemu-user-static,
# binfmt-support and debootstrap with apt, enables the binfmt handlers, and caches each
# root filesystem in ${EDGECNN_PI_CACHE:-~/.cache/edgecnn/pi}: what Raspberry Pi OS Lite
# has that edgecnn uses (python3, python3-venv, openssh-client; on armhf python3-numpy and
# python3-pil, since numpy and Pillow publish no 32-bit ARM wheels), nothing of edgecnn. The emulated systems never touch the network.
#
# `install` takes what `edgecnn bundle RUN --target pi64|pi32` wrote (the .tar.gz or the
# folder) and runs its install.sh inside, as a user would on the device: a fresh venv in
# VENV (default /opt/edgecnn), pip install --no-index from the bundle's wheels, its model
# into the venv's store (VENV/models, edgecnn models add: verified, made current).
# /opt/edgecnn/bin is first on PATH in `run`.
#
# `run` starts CMD in a private mount namespace with a fresh /proc inside the root
# filesystem, and bind-mounts each --bind DIR at the same path inside; the mounts vanish
# with the process. /sys is deliberately not mounted: onnxruntime's CPU detection
# segfaults under qemu when it can read it. qemu emulates the CPU of a Raspberry Pi 4
# (EDGECNN_PI_CPU overrides it; `qemu-aarch64-static -cpu help` lists the choices).
set -euo pipefail
CALLER=$PWD # relative paths given on the command line are the caller's
cd "$(dirname "$0")/.."
REPO=$PWD

# Bump when anything below that shapes a root filesystem changes: it forces a rebuild.
SCRIPT_VERSION=2
SYSTEMS=(arm64 armhf arm64-trixie armhf-trixie)
CACHE=${EDGECNN_PI_CACHE:-$HOME/.cache/edgecnn/pi}
VENV=/opt/edgecnn

log() { echo "==> $*" >&2; }
die() {
    echo "pi_emulation: $*" >&2
    exit 1
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

usage() {
    sed -n '5,8p' "$0" | sed 's/^# *//' >&2
    exit 2
}

# The Raspberry Pi 4's Cortex-A72 for 64-bit. qemu-arm has no A72: its Cortex-A15 is the
# closest to an A72 in 32-bit mode (NEON and VFPv4; qemu-arm's default "max" would add
# ARMv8.2 dot-product instructions that a Pi 4 does not have).
# A system is ARCH or ARCH-SUITE; bookworm when no suite is named.
arch_of() { echo "${1%%-*}"; }
suite_of() { case "$1" in *-*) echo "${1#*-}" ;; *) echo bookworm ;; esac; }
default_cpu() { case "$(arch_of "$1")" in arm64) echo cortex-a72 ;; armhf) echo cortex-a15 ;; esac; }
qemu_name() { case "$(arch_of "$1")" in arm64) echo qemu-aarch64 ;; armhf) echo qemu-arm ;; esac; }
check_arch() {
    case " ${SYSTEMS[*]} " in *" $1 "*) ;; *) die "unknown system '$1' (${SYSTEMS[*]})" ;; esac
}

# --- host tools --------------------------------------------------------------------------

install_host_tools() {
    local missing=() pkg
    for pkg in qemu-user-static binfmt-support debootstrap debian-archive-keyring; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
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

# --- root filesystems --------------------------------------------------------------------

# What Raspberry Pi OS Lite brings that edgecnn uses: Python with venv, and ssh-keygen
# (openssh-client), which checks the signatures of bundles and updates. On armhf also the
# distribution's numpy and Pillow, which publish no 32-bit ARM wheels.
rootfs_packages() {
    local packages="python3 python3-venv openssh-client"
    [ "$(arch_of "$1")" = armhf ] && packages="$packages python3-numpy python3-pil"
    echo "$packages"
}

rootfs_recipe() {
    echo "v$SCRIPT_VERSION $(suite_of "$1") $(arch_of "$1") $(rootfs_packages "$1")"
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
    local start=$SECONDS mirror include suite
    mirror=$(debian_mirror)
    suite=$(suite_of "$arch")
    include=$(rootfs_packages "$arch" | tr ' ' ',')
    # Built beside the target and renamed when complete, so that an interrupted build
    # never leaves a root filesystem that looks finished.
    local tmp=$CACHE/.$arch.building
    as_root rm -rf "$tmp" && mkdir -p "$tmp/root"
    log "$arch: debootstrap $suite from $mirror (several minutes under emulation)"
    apt_proxy
    as_root debootstrap --arch="$(arch_of "$arch")" --variant=minbase --include="$include" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $tmp/debootstrap.log"
    as_root chroot "$tmp/root" apt-get clean
    echo "$recipe" | as_root tee "$tmp/root/.edgecnn-rootfs" >/dev/null
    as_root rm -rf "$target"
    as_root mv "$tmp/root" "$target"
    as_root rm -rf "$tmp"
    log "$arch: root filesystem built in $((SECONDS - start)) s"
}

# cmd_install SYSTEM BUNDLE [VENV]: the bundle's install.sh into a fresh venv at VENV
# (default $VENV). Exits with install.sh's status (1: verify failed, 2: something
# missing), 1 for this script's own refusals.
cmd_install() {
    [ $# -eq 2 ] || [ $# -eq 3 ] || usage
    local arch=$1 bundle=$2 venv=${3:-$VENV} tmp folder status=0
    case $venv in */../* | */.. | *[!A-Za-z0-9/._-]*) die "VENV must be a plain folder in /opt, got '$venv'" ;; /opt/?*) ;; *) die "VENV must be a folder in /opt, got '$venv'" ;; esac
    case $bundle in /*) ;; *) bundle=$CALLER/$bundle ;; esac
    check_arch "$arch"
    [ -f "$CACHE/$arch/.edgecnn-rootfs" ] || die "no $arch root filesystem: run '$0 build $arch'"
    [ -e "/proc/sys/fs/binfmt_misc/$(qemu_name "$arch")" ] || enable_binfmt
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064 # expanded now, on purpose
    trap "rm -rf '$tmp'" EXIT
    if [ -f "$bundle" ]; then
        tar -xzf "$bundle" -C "$tmp" || die "$bundle: not a bundle archive"
        folder=$(find "$tmp" -mindepth 2 -maxdepth 2 -name install.sh -printf '%h\n' | head -n1)
    else
        folder=$(realpath -m "$bundle")
    fi
    [ -n "$folder" ] && [ -f "$folder/install.sh" ] || die "$bundle: no install.sh inside"
    as_root rm -rf "${CACHE:?}/$arch$venv"
    in_root "$CACHE/$arch" "$arch" --bind "$folder:/mnt/bundle" sh /mnt/bundle/install.sh "$venv" ||
        status=$?
    return "$status"
}

cmd_build() {
    local arches=("$@") arch
    [ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
    for arch in "${arches[@]}"; do check_arch "$arch"; done
    install_host_tools
    enable_binfmt
    mkdir -p "$CACHE"
    # One build at a time: two would share (and remove) each other's .ARCH.building. A
    # second one waits, then finds the root filesystems built.
    exec 9>"$CACHE/.build.lock"
    flock 9
    for arch in "${arches[@]}"; do
        build_rootfs "$arch"
    done
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
    for arch in "${SYSTEMS[@]}"; do
        if [ -f "$CACHE/$arch/.edgecnn-rootfs" ]; then
            local installed="edgecnn not installed"
            [ ! -x "$CACHE/$arch$VENV/bin/edgecnn" ] || installed="edgecnn installed in $VENV"
            echo "$arch: $(cat "$CACHE/$arch/.edgecnn-rootfs"); $installed;" \
                "$(du -sh "$CACHE/$arch" | cut -f1)"
        else
            echo "$arch: not built"
        fi
    done
}

case "${1:-}" in
build) shift && cmd_build "$@" ;;
install) shift && cmd_install "$@" ;;
run) shift && cmd_run "$@" ;;
status) cmd_status ;;
clean) as_root rm -rf "$CACHE" ;;
*) usage ;;
esac
