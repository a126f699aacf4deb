#!/usr/bin/env bash
# Installs the Debian packages the real servers in tests and the demo need, only when missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)  # cloud tests start their own cluster
[ -x /usr/bin/chromium ] || need+=(chromium)  # the console's browser tests (Playwright drives it)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "CarbonTrace: installing missing Debian packages: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "CarbonTrace: need root (or sudo) to install: ${need[*]}. Install them and re-run make." >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "CarbonTrace: installed ${need[*]}"
