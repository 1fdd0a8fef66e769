#!/usr/bin/env bash
# cluster-up.sh DIR: starts a private one-node Slurm cluster for tests, with
# everything it owns under DIR:
#
#   DIR/etc/slurm.conf     the cluster's configuration (point SLURM_CONF at it)
#   DIR/env.sh             `source DIR/env.sh` sets SLURM_CONF for the client commands
#   DIR/munge/             munged's key, socket, PID, seed and log (owned by the munge user)
#   DIR/state, DIR/spool   slurmctld's state and slurmd's spool (wiped at every start)
#   DIR/run/*.pid          PID files of slurmctld and slurmd
#   DIR/log/*.log          slurmctld's and slurmd's logs
#
# It never touches a system-wide munged or Slurm: its own munge key and
# socket, its own ports (the first free pair from 6817 up). Stop it with
# cluster-down.sh DIR, which stops only the processes these PID files name
# (cluster-up.sh does that too when it finds a cluster still running in DIR).
# Needs root (slurmd starts jobs as their users; munged runs as `munge`) and
# Debian's packages slurmctld, slurmd, slurm-client and munge.
set -euo pipefail

die() { echo "cluster-up: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: cluster-up.sh DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd starts jobs as their users; munged runs as the munge user)"
for tool in munged munge slurmctld slurmd sbatch scontrol sinfo runuser; do
  command -v "$tool" >/dev/null || die "'$tool' not found: install Debian's slurmctld slurmd slurm-client munge (scripts/install-deps.sh)"
done
id munge >/dev/null 2>&1 || die "no 'munge' user: install Debian's munge package"

mkdir -p "$1"
dir="$(cd "$1" && pwd)"
# slurm.conf cannot quote paths.
[[ "$dir" != *[[:space:]]* ]] || die "DIR must not contain blanks: '$dir'"
# A cluster left running here (an interrupted test run) is this script's own:
# stop it (only what its PID files name) and start afresh.
for pidfile in "$dir/munge/munged.pid" "$dir/run/slurmctld.pid" "$dir/run/slurmd.pid"; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "cluster-up: a cluster is still running in $dir; stopping it first"
    "$(dirname "${BASH_SOURCE[0]}")/cluster-down.sh" "$dir"
    break
  fi
done

# --- munged, as the munge user, with its own key and socket. ---
# munged refuses a key or socket whose directory others could write; the munge
# user must also be able to reach DIR.
runuser -u munge -- test -x "$dir" ||
  die "the munge user cannot reach $dir: use a directory whose parents are world-searchable (e.g. under /tmp)"
rm -rf "$dir/munge" "$dir/state" "$dir/spool"
mkdir -p "$dir/munge" "$dir/etc" "$dir/state" "$dir/spool" "$dir/run" "$dir/log"
chmod 0700 "$dir/state" "$dir/spool"
# munged wants its socket's directory searchable by all (clients connect to it).
chmod 0711 "$dir/munge"
head -c 1024 /dev/urandom >"$dir/munge/munge.key"
chmod 0400 "$dir/munge/munge.key"
chown -R munge:munge "$dir/munge"
socket="$dir/munge/munge.socket"
runuser -u munge -- munged --socket="$socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" ||
  die "munged did not start; see $dir/munge/munged.log"
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
munge -s via -S "$socket" >/dev/null || die "munged does not answer on $socket; see $dir/munge/munged.log"

# --- Two free TCP ports for slurmctld and slurmd. ---
listening_ports() {
  # Local ports of listening sockets (state 0A), in decimal.
  local fields
  while read -r -a fields; do
    if [ "${fields[3]:-}" = "0A" ]; then echo $((16#${fields[1]##*:})); fi
  done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
}
busy=" $(listening_ports | tr '\n' ' ') "
ctl_port=""
for port in $(seq 6817 2 6899); do
  if [[ "$busy" != *" $port "* && "$busy" != *" $((port + 1)) "* ]]; then ctl_port=$port; break; fi
done
[ -n "$ctl_port" ] || die "no free pair of TCP ports between 6817 and 6900"
d_port=$((ctl_port + 1))

# --- slurm.conf. The node line is the machine's own (slurmd -C), with a
# little memory left to the system. ---
host="$(hostname -s)"
node_line="$(slurmd -C | head -n 1)"
memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")"
[ -n "$memory" ] || die "cannot read RealMemory from 'slurmd -C': $node_line"
node_line="$(sed "s/RealMemory=[0-9]*/RealMemory=$((memory * 9 / 10))/" <<<"$node_line")"
cat >"$dir/etc/slurm.conf" <<EOF
# Written by via's slurm/testing/cluster-up.sh: a private one-node test cluster.
ClusterName=via-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again
# (default 120 s); with 2 s scheduling intervals a requeue restarts in ~12 s.
AuthInfo=socket=$socket,cred_expire=10
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No systemd, no cgroups here: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Jobs that ignore SIGTERM are killed 10 s later (the default 30 s only slows teardown).
KillWait=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
printf 'export SLURM_CONF=%q\n' "$dir/etc/slurm.conf" >"$dir/env.sh"
export SLURM_CONF="$dir/etc/slurm.conf"

# --- The daemons (each daemonizes and writes its PID file). ---
slurmctld -f "$SLURM_CONF" || die "slurmctld did not start; see $dir/log/slurmctld.log"
slurmd -f "$SLURM_CONF" || die "slurmd did not start; see $dir/log/slurmd.log"

# Ready when the node is idle.
for _ in $(seq 150); do
  state="$(sinfo -h -n "$host" -o %t 2>/dev/null || true)"
  if [ "$state" = "idle" ]; then
    echo "cluster-up: one-node cluster '$host' up in $dir (slurmctld port $ctl_port); source $dir/env.sh"
    exit 0
  fi
  sleep 0.2
done
die "node $host is not idle after 30 s (state '${state:-unknown}'); see $dir/log/slurmctld.log and $dir/log/slurmd.log"
