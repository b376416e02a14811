#!/usr/bin/env bash
# A local XRootD server for the storage tests and benchmarks: two exported areas, /disk (a site's
# storage element) and /archive (standing for tape), served on a loopback port.
#
#   scripts/xrootd.sh install         apt-get install xrootd-server xrootd-client if missing
#   scripts/xrootd.sh start [PORT DIR] install if needed, start (idempotent), print root://host:port
#   scripts/xrootd.sh stop  [PORT DIR] stop the server started with that PORT and DIR
#   scripts/xrootd.sh status [PORT DIR]
#
# Defaults: PORT=$XROOTD_PORT or 21094, DIR=$XROOTD_DIR or /tmp/prodagent-xrootd-$PORT. Files live
# under DIR/data/{disk,archive}; the server computes adler32 checksums on request.
set -euo pipefail
action=${1:-start}
port=${2:-${XROOTD_PORT:-21094}}
dir=${3:-${XROOTD_DIR:-/tmp/prodagent-xrootd-$port}}
pidfile=$dir/xrootd.pid

install() {
  if command -v xrootd >/dev/null && command -v xrdcp >/dev/null; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "xrootd is not installed and this user cannot install it (need root)" >&2
    return 1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600)
  # A fresh machine may have no package lists yet: update once if the first try fails.
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
    xrootd-server xrootd-client >/dev/null 2>&1 || {
    "${apt[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends \
      xrootd-server xrootd-client >/dev/null
  }
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start() {
  install
  if running; then
    echo "root://127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir/data/disk" "$dir/data/archive" "$dir/admin"
  cat >"$dir/xrootd.cfg" <<CFG
xrd.port $port
xrd.network nodnr
all.export /disk
all.export /archive
oss.localroot $dir/data
all.adminpath $dir/admin
all.pidpath $dir
xrootd.chksum adler32
CFG
  local as_user=()
  if [ "$(id -u)" -eq 0 ]; then  # xrootd refuses to run as root: it drops to its own user
    local user=xrootd
    id "$user" >/dev/null 2>&1 || user=nobody
    chown -R "$user" "$dir"
    as_user=(-R "$user")
  fi
  xrootd -b "${as_user[@]}" -c "$dir/xrootd.cfg" -l "$dir/xrootd.log" -k 2 -n "prodagent-$port" \
    -s "$pidfile" >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do
    if running && xrdfs "root://127.0.0.1:$port" ls /disk >/dev/null 2>&1; then
      echo "root://127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "xrootd did not come up on port $port; see $dir/xrootd.log*" >&2
  return 1
}

stop() {
  if running; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
}

case "$action" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running: root://127.0.0.1:$port"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|status [PORT DIR]" >&2; exit 2 ;;
esac
