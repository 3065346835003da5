#!/usr/bin/env bash
# Fetch noVNC (the browser VNC client of the console page) from the npm registry into DEST
# (default: state/novnc, where `aiostack run console-proxy` looks unless console_novnc_dir says
# otherwise). Not committed: the build fetches it. Needs npm (or set NPM to another client).
#
#   scripts/fetch-novnc.sh [DEST]          NOVNC_VERSION=1.7.0 by default
set -euo pipefail

dest="${1:-state/novnc}"
version="${NOVNC_VERSION:-1.7.0}"
npm="${NPM:-npm}"

if ! command -v "$npm" >/dev/null 2>&1; then
    echo "fetch-novnc: $npm not found; install Node.js/npm first" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# npm pack downloads the published tarball (checked against the registry's integrity hash).
tarball="$(cd "$work" && "$npm" pack --silent "@novnc/novnc@${version}" | tail -n 1)"
tar -xzf "$work/$tarball" -C "$work"
if [ ! -f "$work/package/core/rfb.js" ]; then
    echo "fetch-novnc: @novnc/novnc@${version} has no core/rfb.js" >&2
    exit 1
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.tmp"
cp -r "$work/package" "$dest.tmp"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "noVNC ${version} in $dest"
