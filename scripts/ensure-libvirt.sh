#!/usr/bin/env bash
# Make sure QEMU and a libvirtd answering on qemu:///system are installed and running, for the
# libvirt compute driver and its tests. Also installs what scripts/test-image.sh needs to build the
# test guest (busybox-static, cpio) and what `pip install libvirt-python` needs (libvirt-dev,
# pkg-config, a C compiler).
#
# Without systemd: libvirtd and virtlogd are started by hand as daemons. We deliberately do NOT
# install libvirt-daemon-system (it pulls in systemd) and never start libvirt's "default" network
# (it would add iptables rules to the host).
#
# Idempotent and fast (well under a second) when everything is already there. Needs root (or sudo).
# Exits non-zero, loudly, if libvirtd does not answer within ENSURE_LIBVIRT_TIMEOUT s (default 120).
set -euo pipefail

URI=qemu:///system
TIMEOUT_S=${ENSURE_LIBVIRT_TIMEOUT:-120}

SCRIPT_NAME=ensure-libvirt
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Listing domains needs the QEMU driver loaded; unlike `virsh version` (~4 s here: it probes the
# host every time) it answers in milliseconds. The first connection after a start can take several
# seconds (QEMU capability probing), hence the generous per-attempt timeout.
virsh_ok() { timeout 60 virsh -c "$URI" list --all </dev/null >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------------
# 1. Packages (only the missing ones; a check per file is much faster than asking dpkg)
# ---------------------------------------------------------------------------------------------------
missing=()
need() { # need FILE PACKAGE: install PACKAGE unless FILE exists
    [[ -e $1 ]] || missing+=("$2")
}
need /usr/bin/qemu-system-x86_64 qemu-system-x86
need /usr/bin/qemu-img qemu-utils
need /usr/sbin/libvirtd libvirt-daemon
need /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so \
    libvirt-daemon-driver-qemu
need /usr/bin/virsh libvirt-clients
need /usr/include/libvirt/libvirt.h libvirt-dev
need /usr/bin/pkg-config pkg-config
need /bin/busybox busybox-static
need /usr/bin/cpio cpio
# libvirt-python is an sdist with a C extension: pip needs a compiler and Python's headers.
command -v gcc >/dev/null || missing+=(gcc)
compgen -G '/usr/include/python3*/Python.h' >/dev/null || missing+=(python3-dev)

if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
    log "installing missing packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null >/dev/null
fi

# ---------------------------------------------------------------------------------------------------
# 2. What the packages' systemd units / maintainer scripts would have set up
# ---------------------------------------------------------------------------------------------------
# The QEMU driver refuses to load without the user and group it runs guests as.
if ! getent group libvirt-qemu >/dev/null; then
    log "creating group libvirt-qemu"
    as_root groupadd --system libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
    log "creating user libvirt-qemu"
    as_root useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt \
        --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi
# /dev/kvm as udev would set it up (root:kvm 0660, the QEMU user in group kvm). Without udev it is
# root-only, and then libvirt finds its cached QEMU capabilities (probed with KVM) invalid on every
# call and probes QEMU again: ~4 s each, ~55 s per domain start here. Guests still run under TCG
# when the CPU lacks vmx/svm (the driver's virt_type), whatever libvirt thinks of /dev/kvm.
getent group kvm >/dev/null || as_root groupadd --system kvm
id -nG libvirt-qemu | grep -qw kvm || as_root usermod -aG kvm libvirt-qemu
if [[ -c /dev/kvm ]] && [[ $(stat -c %G:%a /dev/kvm) != kvm:660 ]]; then
    log "giving /dev/kvm to group kvm (mode 0660)"
    as_root chgrp kvm /dev/kvm
    as_root chmod 0660 /dev/kvm
fi
as_root mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt

# ---------------------------------------------------------------------------------------------------
# 3. Daemons
# ---------------------------------------------------------------------------------------------------
note="already running"
if ! virsh_ok; then
    note="started"
    deadline=$((SECONDS + TIMEOUT_S))
    # (Re)start whichever daemon is not running, until libvirtd answers: one found running may
    # be on its way out (a libvirtd that was just told to stop takes seconds to exit).
    # Redirect everything: a daemon holding our stdout open would hang `make test | tee`.
    until virsh_ok; do
        if ! pgrep -x virtlogd >/dev/null; then
            log "starting virtlogd"
            as_root virtlogd -d </dev/null >/dev/null 2>&1 || die "virtlogd did not start"
        fi
        if ! pgrep -x libvirtd >/dev/null; then
            log "starting libvirtd"
            as_root libvirtd -d </dev/null >/dev/null 2>&1 || die "libvirtd did not start"
        fi
        if ((SECONDS >= deadline)); then
            timeout 5 virsh -c "$URI" list --all </dev/null >&2 || true
            tail -n 20 /var/log/libvirt/libvirtd.log >&2 2>/dev/null || true
            die "libvirtd does not answer on $URI after ${TIMEOUT_S}s"
        fi
        sleep 0.2
    done
fi
echo "libvirt:    ok  $URI  ($note)"
