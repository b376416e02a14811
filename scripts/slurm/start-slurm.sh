#!/usr/bin/env bash
# Start a single-node Slurm cluster for prodagent's tests: munged, slurmctld and
# slurmd as root, without systemd. Installs the Debian packages when missing.
# Idempotent: when the cluster already answers, it prints its state and exits 0.
#
# Settings (environment, all optional):
#   SLURM_STATE       state, logs and pid files      (default /var/spool/prodagent-slurm)
#   SLURM_CPUS        CPUs the node advertises        (default 16; overcommitted)
#   SLURM_MEMORY_MB   memory the node advertises      (default 4096 per CPU; overcommitted)
#   SLURM_CONF        where slurm.conf is written     (default /etc/slurm/slurm.conf, which
#                     every Slurm client reads when SLURM_CONF is unset)
#   SLURM_KEEP_STATE=1  reuse the previous state directory (default: start clean, so that
#                     no ghost job of an earlier run holds a slot)
#   SLURM_NO_INSTALL=1  fail instead of running apt-get when packages are missing
#   SLURM_MEMORY_ENFORCEMENT=cgroup|linuxproc  (default: cgroup where a cgroup v1
#                     memory controller is writable, else linuxproc; see slurm.conf.in)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${SLURM_STATE:-/var/spool/prodagent-slurm}"
cpus="${SLURM_CPUS:-16}"
memory_mb="${SLURM_MEMORY_MB:-$((cpus * 4096))}"
conf="${SLURM_CONF:-/etc/slurm/slurm.conf}"
host="$(hostname -s)"
started_at=$(date +%s%N)

say() { echo "start-slurm: $*"; }
took() { echo "$(( ($(date +%s%N) - started_at) / 1000000 )) ms"; }
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_ready() {
  case "$(sinfo -h -n "$host" -o %T 2>/dev/null || true)" in
    idle*|mixed*|allocated*) return 0 ;;
    *) return 1 ;;
  esac
}
if [ "$conf" != /etc/slurm/slurm.conf ]; then export SLURM_CONF="$conf"; fi

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "${SLURM_NO_INSTALL:-0}" = 1 ]; then
    echo "start-slurm: missing packages: ${missing[*]}" >&2
    exit 2
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get install -y -q --no-install-recommends "${missing[@]}")
  # Try the package lists already present first; update them only if that fails.
  if ! "${apt[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    "${apt[@]}" >/dev/null
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || head -c 1024 /dev/urandom > /etc/munge/munge.key
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/log/munge
  chmod 0600 /etc/munge/munge.key
  chmod 0755 /run/munge
  chmod 0711 /var/lib/munge
  rm -f /run/munge/munged.pid
  # munged refuses to run as root.
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 100); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.05
  done
  munge -n | unmunge >/dev/null
  cp /run/munge/munged.pid "$state/munged.pid"
}

# cgroup when a cgroup v1 memory controller is mounted and writable, else linuxproc.
memory_mode() {
  case "${SLURM_MEMORY_ENFORCEMENT:-auto}" in
    cgroup|linuxproc) echo "$SLURM_MEMORY_ENFORCEMENT"; return ;;
  esac
  if grep -qs ' /sys/fs/cgroup/memory cgroup ' /proc/mounts \
      && [ -w /sys/fs/cgroup/memory/cgroup.procs ]; then
    echo cgroup
  else
    echo linuxproc
  fi
}

render_conf() {
  local mode=$1 proctrack task jobacct params
  if [ "$mode" = cgroup ]; then
    proctrack=proctrack/cgroup task=task/cgroup jobacct=jobacct_gather/cgroup params=""
    sed -e "s|{{STATE}}|$state|g" "$here/cgroup.conf.in" > "$(dirname "$conf")/cgroup.conf"
  else
    proctrack=proctrack/linuxproc task=task/none jobacct=jobacct_gather/linux
    params="JobAcctGatherParams=OverMemoryKill"
  fi
  mkdir -p "$(dirname "$conf")"
  sed -e "s|{{HOST}}|$host|g" -e "s|{{CPUS}}|$cpus|g" \
      -e "s|{{MEMORY_MB}}|$memory_mb|g" -e "s|{{STATE}}|$state|g" \
      -e "s|{{PROCTRACK}}|$proctrack|g" -e "s|{{TASK}}|$task|g" \
      -e "s|{{JOBACCT}}|$jobacct|g" -e "s|{{JOBACCT_PARAMS}}|$params|g" \
      "$here/slurm.conf.in" > "$conf.tmp"
  mv "$conf.tmp" "$conf"
}

if command -v sinfo >/dev/null && pid_alive "$state/slurmctld.pid" \
    && pid_alive "$state/slurmd.pid" && node_ready; then
  say "already running (node $host $(sinfo -h -n "$host" -o %T), conf $conf)"
  exit 0
fi

install_packages
# Leftovers of a half-started cluster would fight over the ports.
"$here/stop-slurm.sh" >/dev/null 2>&1 || true
if [ "${SLURM_KEEP_STATE:-0}" != 1 ]; then rm -rf "$state"; fi
mkdir -p "$state/ctld" "$state/slurmd" "$state/log"
start_munge
mode=$(memory_mode)
render_conf "$mode"
/usr/sbin/slurmctld -f "$conf"
/usr/sbin/slurmd -f "$conf"

for _ in $(seq 300); do
  node_ready && break
  sleep 0.1
done
if ! node_ready; then
  echo "start-slurm: node $host not ready after 30 s; logs in $state/log" >&2
  tail -n 5 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
  exit 1
fi
say "ready in $(took): node $host, $cpus CPUs, ${memory_mb} MB, memory enforcement $mode, conf $conf, state $state"
