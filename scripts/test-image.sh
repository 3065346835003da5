#!/usr/bin/env bash
# Build aiostack's test guest -- a Debian kernel and a busybox initramfs, booted by direct kernel
# boot -- and optionally upload it through the image API.
#
#   scripts/test-image.sh                 build (or reuse the cached build) and print its files as
#                                         KERNEL=… RAMDISK=… DISK=… CMDLINE=… (shell-sourceable)
#   scripts/test-image.sh --cloud NAME    also upload kernel (aki), ramdisk (ari) and root disk
#                                         (qcow2, with kernel_id/ramdisk_id/os_command_line) with
#                                         the `openstack` CLI to the clouds.yaml cloud NAME; the
#                                         bootable image's id is the LAST line printed
#   options: --name PREFIX (image names; default aiostack-test), --public
#
# The guest's /init prints AIOSTACK-TEST-GUEST-BOOTED on the serial console (ttyS0), loads the virtio modules, runs
# udhcpc on every NIC, prints its addresses and disks, then idles. No internet is needed in the
# guest; building needs the Debian mirror (`apt-get download`, no package is installed) and
# busybox-static + cpio on the host (scripts/ensure-libvirt.sh installs them).
#
# The build is cached under $AIOSTACK_TEST_IMAGE_DIR (default ~/.cache/aiostack/test-image), keyed
# by the kernel package and this script's contents: a second run takes about a second.
set -euo pipefail

MARKER="AIOSTACK-TEST-GUEST-BOOTED"
CMDLINE="console=ttyS0 loglevel=4"
CACHE=${AIOSTACK_TEST_IMAGE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aiostack/test-image}
CLOUD=
PREFIX=aiostack-test
VISIBILITY=()

log() { printf '%s\n' "test-image: $*" >&2; }
die() {
    printf '\n%s\n\n' "test-image: ERROR: $*" >&2
    exit 1
}

while (($#)); do
    case $1 in
    --cloud) CLOUD=${2:?--cloud needs a clouds.yaml cloud name}; shift 2 ;;
    --name) PREFIX=${2:?--name needs a prefix}; shift 2 ;;
    --public) VISIBILITY=(--public); shift ;;
    -h | --help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ -x /bin/busybox ]] && /bin/busybox --list >/dev/null 2>&1 ||
    die "/bin/busybox missing: run scripts/ensure-libvirt.sh (installs busybox-static)"
command -v cpio >/dev/null || die "cpio missing: run scripts/ensure-libvirt.sh"
command -v qemu-img >/dev/null || die "qemu-img missing: run scripts/ensure-libvirt.sh"
# A dynamically linked busybox would not run inside the initramfs.
if command -v file >/dev/null && ! file -L /bin/busybox | grep -q 'statically linked'; then
    die "/bin/busybox is not statically linked: install busybox-static"
fi

# ---------------------------------------------------------------------------------------------------
# 1. Which kernel package, and is its build cached?
# ---------------------------------------------------------------------------------------------------
kernel_pkg() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: //p' | head -n1; }
pkg=$(kernel_pkg)
if [[ -z $pkg ]]; then
    log "no package lists: apt-get update"
    apt-get update -qq
    pkg=$(kernel_pkg)
fi
[[ -n $pkg ]] || die "cannot resolve linux-image-amd64 to a kernel package"
ver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
key=$(printf '%s\n%s\n' "$pkg=$ver" "$(sha256sum "$0")" | sha256sum | cut -c1-12)
OUT=$CACHE/$key

if [[ ! -f $OUT/.complete ]]; then
    log "building into $OUT ($pkg $ver)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download -qq "$pkg=$ver" 2>/dev/null) ||
        (cd "$work" && apt-get download "$pkg=$ver") ||
        die "apt-get download $pkg failed"
    dpkg-deb -x "$work"/*.deb "$work/pkg"
    kver=$(basename "$(find "$work/pkg/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
    rm -rf "$OUT" && mkdir -p "$OUT"
    cp "$work/pkg/boot/vmlinuz-$kver" "$OUT/vmlinuz"

    # -- the initramfs: static busybox, the virtio modules (decompressed: busybox insmod cannot
    #    read .ko.xz), /init
    root=$work/root
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules,usr/share/udhcpc}
    cp /bin/busybox "$root/bin/busybox"
    modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover
             net_failover virtio_net virtio_blk button evdev"
    for m in $modules; do
        f=$(find "$work/pkg/lib/modules/$kver" -name "$m.ko*" | head -n1)
        [[ -n $f ]] || continue # built into this kernel
        case $f in
        *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
        *) cp "$f" "$root/lib/modules/$m.ko" ;;
        esac
    done
    cat >"$root/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc calls this with the lease in the environment: configure the interface with it.
case $1 in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "aiostack-test-guest: $interface $ip/${mask:-24}" >/dev/console ;;
esac
exit 0
EOF
    cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "$MARKER"
for m in $(echo $modules); do
    [ -f /lib/modules/\$m.ko ] && insmod /lib/modules/\$m.ko 2>/dev/null
done
hostname aiostack-test-guest
# ACPI power button (libvirt's shutdown) -> power off at once, so a clean stop takes no time.
for e in /sys/class/input/event*; do
    grep -qs "Power Button" "\$e/device/name" || continue
    (head -c 24 "/dev/input/\${e##*/}" >/dev/null && echo "aiostack-test-guest: power off" &&
        poweroff -f) &
done
ip link set lo up
for n in /sys/class/net/*; do
    n=\${n##*/}
    [ "\$n" = lo ] && continue
    ip link set "\$n" up
    udhcpc -i "\$n" -n -q -t 3 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 ||
        echo "aiostack-test-guest: \$n no DHCP lease"
done
echo "aiostack-test-guest: disks: \$(awk 'NR > 2 { printf "%s ", \$4 }' /proc/partitions)"
echo "AIOSTACK-TEST-GUEST-READY"
# PID 1 must never exit (the kernel would panic); a shell on the console helps debugging.
while :; do setsid cttyhack sh </dev/ttyS0 >/dev/ttyS0 2>&1 || sleep 5; done
EOF
    chmod 755 "$root/init" "$root/usr/share/udhcpc/default.script"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$OUT/initrd.img"
    # The "image" proper: a small, empty root disk (the guest runs from its initramfs).
    qemu-img create -q -f qcow2 "$OUT/disk.qcow2" 64M
    printf '%s\n' "$CMDLINE" >"$OUT/cmdline"
    printf '%s\n' "$MARKER" >"$OUT/marker"
    touch "$OUT/.complete"
    # Older builds (another kernel, an older script) are of no further use.
    find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
    log "built: kernel $kver, initramfs $(du -h "$OUT/initrd.img" | cut -f1)"
fi

if [[ -z $CLOUD ]]; then
    echo "KERNEL=$OUT/vmlinuz"
    echo "RAMDISK=$OUT/initrd.img"
    echo "DISK=$OUT/disk.qcow2"
    echo "CMDLINE='$CMDLINE'"
    echo "MARKER=$MARKER"
    exit 0
fi

# ---------------------------------------------------------------------------------------------------
# 2. Upload (names carry the build key: a second upload of the same build reuses the images)
# ---------------------------------------------------------------------------------------------------
command -v openstack >/dev/null || die "the openstack CLI is not on PATH (activate .venv)"
os() { openstack --os-cloud "$CLOUD" "$@"; }

# Echo the id of the active image NAME, creating it with "$@" (create options) when missing.
ensure_image() {
    local name=$1 id
    shift
    id=$(os image list --name "$name" --status active -f value -c ID | head -n1)
    if [[ -z $id ]]; then
        id=$(os image create "${VISIBILITY[@]}" "$@" -f value -c id "$name") ||
            die "uploading $name to cloud $CLOUD failed"
        log "uploaded $name: $id"
    fi
    printf '%s\n' "$id"
}

kernel_id=$(ensure_image "$PREFIX-$key-kernel" --disk-format aki --container-format aki \
    --file "$OUT/vmlinuz")
ramdisk_id=$(ensure_image "$PREFIX-$key-ramdisk" --disk-format ari --container-format ari \
    --file "$OUT/initrd.img")
image_id=$(ensure_image "$PREFIX-$key" --disk-format qcow2 --container-format bare \
    --file "$OUT/disk.qcow2" --property kernel_id="$kernel_id" \
    --property ramdisk_id="$ramdisk_id" --property os_command_line="$CMDLINE")
echo "kernel_id=$kernel_id ramdisk_id=$ramdisk_id"
echo "$image_id"
