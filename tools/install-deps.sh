#!/bin/sh
# install-deps.sh: installs the Debian packages moekit builds against, only when pkg-config cannot find them.
# Idempotent and silent when everything is present (it is run by `make check`, `make demo` and `make deps`).
#   sleef -> libsleef-dev   hwloc -> libhwloc-dev   criterion -> libcriterion-dev   benchmark -> libbenchmark-dev
set -eu

PKG_CONFIG=${PKG_CONFIG:-pkg-config}
missing=""

if command -v "$PKG_CONFIG" >/dev/null 2>&1; then
    for pair in sleef:libsleef-dev hwloc:libhwloc-dev criterion:libcriterion-dev benchmark:libbenchmark-dev; do
        module=${pair%%:*}
        package=${pair#*:}
        if ! "$PKG_CONFIG" --exists "$module" 2>/dev/null; then
            missing="$missing $package"
        fi
    done
else
    missing="pkg-config libsleef-dev libhwloc-dev libcriterion-dev libbenchmark-dev"
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "install-deps.sh: missing packages:$missing" >&2
    echo "install-deps.sh: not root and sudo is not available; install them as root:" >&2
    echo "  apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps.sh: missing packages:$missing, and apt-get is not available (Debian/Ubuntu only)" >&2
    exit 1
fi

echo "install-deps.sh: installing$missing" >&2
# shellcheck disable=SC2086 # $missing is a word list on purpose
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update
# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
