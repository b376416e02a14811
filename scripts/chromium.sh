#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium for the monitor's browser tests
# (Playwright drives it by path: `playwright install` cannot download browsers here). Idempotent.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version
