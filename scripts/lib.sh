# Shared by the scripts/ensure-*.sh scripts: messages, failing loudly, and running as root.
# Source it after setting SCRIPT_NAME (the prefix of every message).

log() { printf '%s\n' "$SCRIPT_NAME: $*" >&2; }
die() {
    printf '\n%s\n\n' "$SCRIPT_NAME: ERROR: $*" >&2
    exit 1
}

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    SUDO=(__need_root__)
fi
as_root() {
    if [[ ${SUDO[0]:-} == __need_root__ ]]; then
        die "need root (or sudo) to run: $*"
    fi
    "${SUDO[@]}" "$@"
}
