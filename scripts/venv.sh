#!/usr/bin/env bash
# Create .venv (with python3, or $PYTHON) if it is missing, and `pip install -e '.[dev]'` into it
# whenever pyproject.toml is newer than the stamp file .venv/.installed. Fast when nothing changed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

log() { printf '%s\n' "venv: $*" >&2; }
die() {
    printf '\n%s\n\n' "venv: ERROR: $*" >&2
    exit 1
}

# A venv whose interpreter is gone or broken (e.g. half-created, or python upgraded) is rebuilt.
if [[ -d $VENV ]] && ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
    log "$VENV is broken: recreating it"
    rm -rf "$VENV"
fi

if [[ ! -d $VENV ]]; then
    # Debian ships venv's pip bootstrap (ensurepip) separately, in python3-venv; a minimal Debian lacks
    # python3 altogether. Install both when we can (root + apt), else say what is missing.
    if [[ $PYTHON == python3 ]] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing python3 and python3-venv"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                python3 python3-venv </dev/null
        else
            die "python3 cannot create virtual environments: install python3 and python3-venv"
        fi
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "aiostack needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)"
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        die "'$PYTHON -m venv $VENV' failed"
    fi
fi

# libvirt-python (the libvirt compute driver) builds from source: it needs libvirt's headers,
# pkg-config and a C compiler. Install them like python3-venv above when we can.
need_build_deps() {
    ! { command -v gcc >/dev/null && command -v pkg-config >/dev/null &&
        pkg-config --exists libvirt; }
}

if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
    if need_build_deps; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "installing the build dependencies of libvirt-python (libvirt-dev, pkg-config, gcc)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                libvirt-dev pkg-config gcc python3-dev </dev/null
        else
            die "libvirt-python needs libvirt-dev, pkg-config and gcc: install them"
        fi
    fi
    log "installing aiostack and its dev dependencies into $VENV (pip install -e '.[dev]')"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$STAMP"
    log "$VENV is ready"
fi
