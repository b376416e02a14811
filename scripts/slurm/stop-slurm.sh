#!/usr/bin/env bash
# Stop the cluster that start-slurm.sh started: slurmd, slurmctld, and munged if
# start-slurm.sh started it. Only the pids in its pid files are signalled.
#   SLURM_STATE   as for start-slurm.sh (default /var/spool/prodagent-slurm)
set -uo pipefail
state="${SLURM_STATE:-/var/spool/prodagent-slurm}"

stop() {  # name pidfile
  local name=$1 pidfile=$2 pid t0
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  rm -f "$pidfile"
  kill -0 "$pid" 2>/dev/null || return 0
  t0=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null
  # A zombie still answers kill -0, so look at the process state as well.
  for _ in $(seq 200); do
    [ -d "/proc/$pid" ] || break
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
    sleep 0.05
  done
  if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    echo "stop-slurm: $name (pid $pid) killed after 10 s"
  else
    echo "stop-slurm: $name (pid $pid) stopped in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  fi
}

stop slurmd "$state/slurmd.pid"
stop slurmctld "$state/slurmctld.pid"
if [ -s "$state/munged.pid" ]; then
  stop munged "$state/munged.pid"
  rm -f /run/munge/munged.pid
fi
