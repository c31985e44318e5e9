#!/bin/sh
# install-deps.sh: makes sure Debian's python3-numpy is importable by /usr/bin/python3 (the interpreter the golden
# model runs with; the first python3 on PATH may be another one). Idempotent and silent when numpy is present.
set -eu

PY=${GOLDEN_PYTHON:-/usr/bin/python3}

if "$PY" -c 'import numpy' >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "tests/golden/install-deps.sh: $PY cannot import numpy; not root and sudo is not available." >&2
    echo "  install it as root: apt-get install -y --no-install-recommends python3-numpy" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/golden/install-deps.sh: $PY cannot import numpy and apt-get is not available (Debian/Ubuntu only)" >&2
    exit 1
fi

echo "tests/golden/install-deps.sh: installing python3-numpy" >&2
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-numpy ||
    { $as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-numpy; }

if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
    echo "tests/golden/install-deps.sh: python3-numpy was installed but $PY still cannot import numpy" >&2
    exit 1
fi
