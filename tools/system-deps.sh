#!/usr/bin/env bash
# The Debian packages a make target needs beyond Python, in one place (the Makefile and .ci/run
# both call this). Installs the missing ones when it may (root and apt-get); otherwise stops at
# once with the exact command to run.
#   tools/system-deps.sh test   what `make test` needs
#   tools/system-deps.sh perf   what `make perf` needs
set -euo pipefail

case "${1:-}" in
    # chromium: the UI's browser test; prometheus: the monitoring tests (promtool too);
    # postgresql: the catalogue against a real PostgreSQL; libb64-0d: perf_analyzer (perf smoke)
    test) packages=(chromium prometheus postgresql libb64-0d) ;;
    # perf_analyzer (tritonclient[all]) links libb64
    perf) packages=(libb64-0d) ;;
    *) echo "usage: $0 test|perf" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null; then
    echo "tricolor: not a Debian-based system; make $1 needs the equivalents of: ${packages[*]}" >&2
    exit 1
fi
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
# Debian's own python3 makes venvs only with python3-venv (`make setup` creates three)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "tricolor: make $1 needs Debian packages that are missing: ${missing[*]}" >&2
    echo "  install them with:  sudo apt-get update && sudo ${install[*]}" >&2
    exit 1
fi
echo "tricolor: installing the Debian packages make $1 needs: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
"${install[@]}" >/dev/null
