#!/usr/bin/env bash
# Make sure the `prometheus` and `promtool` binaries (Debian's prometheus package) are installed,
# for the metrics tests. Idempotent; the tests start their own Prometheus on a free port, so no
# service is started here (the package's own service, if started by apt, is stopped again).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: do not start the packaged service during the install.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ "$had_policy" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
if [ "$had_policy" -eq 0 ]; then rm -f /usr/sbin/policy-rc.d; fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
echo "prometheus and promtool installed"
