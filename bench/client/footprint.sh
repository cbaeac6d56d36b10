#!/usr/bin/env bash
# What an administrator installs to drive sip2uc's API: the client package alone (clients/python)
# against the whole server install, in two throw-away virtual environments with the locked
# versions. Prints the installed size, the number of distributions, and the import time of
# `sip2uc.client` and the CLI's start-up (`sip2uc --help`), best of 5.
#   bench/client/footprint.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The lock without hashes, as constraints: the same versions, only what each project needs.
grep -v -- '--hash=' "$root/requirements.lock" | sed 's/ \\$//' > "$work/constraints.txt"

measure() {
    local label="$1"; shift
    local venv="$work/$label"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$work/constraints.txt" "$@" 2>&1 \
        | grep -v '^WARNING: Location' || true
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    local size dists
    size="$(du -sm --exclude='pip' --exclude='pip-*' --exclude='setuptools*' "$site" | cut -f1)"
    dists="$("$venv/bin/pip" list --format=freeze --disable-pip-version-check 2>/dev/null | grep -vc '^pip=\|^setuptools=')"
    local best_import=999999 best_help=999999 t
    for _ in 1 2 3 4 5; do
        t="$("$venv/bin/python" - <<'PY'
import subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.executable, "-c", "import sip2uc.client"], check=True)
print(int((time.perf_counter() - start) * 1000))
PY
)"
        ((t < best_import)) && best_import=$t
        t="$("$venv/bin/python" - "$venv/bin/sip2uc" <<'PY'
import subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.argv[1], "--help"], check=True, capture_output=True)
print(int((time.perf_counter() - start) * 1000))
PY
)"
        ((t < best_help)) && best_help=$t
    done
    printf '%-8s %6s MB %4s distributions  import sip2uc.client %5s ms  sip2uc --help %5s ms\n' \
        "$label" "$size" "$dists" "$best_import" "$best_help"
}

echo "install footprint (locked versions; sizes exclude pip/setuptools)"
measure client "$root/clients/python"
measure server "$root/clients/python" "$root"
