#!/bin/sh
# install-bench-deps.sh: installs the packages that only `make bench` uses, when missing: the peer libraries
# (OpenBLAS, oneDNN: loaded with dlopen, so the benchmark builds and runs without them), gnuplot for the plots, and
# python3 for tools/bench-report. Silent when everything is present; never fails the build (a missing peer is
# skipped with a message, missing gnuplot means no plots).
PACKAGES="libopenblas-dev libdnnl-dev gnuplot-nox python3"

command -v dpkg-query >/dev/null 2>&1 || { echo "install-bench-deps: not a Debian system; install $PACKAGES yourself" >&2; exit 0; }

missing=""
for p in $PACKAGES; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "install-bench-deps: missing:$missing (not root and no sudo): peers/plots without them are skipped" >&2
    exit 0
fi

echo "install-bench-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $missing >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq $missing >/dev/null; } ||
    echo "install-bench-deps: apt-get failed for:$missing (continuing without them)" >&2
exit 0
