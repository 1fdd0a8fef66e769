#!/usr/bin/env bash
# cluster-down.sh DIR: stops the test cluster cluster-up.sh started in DIR.
# Cancels its jobs, then stops slurmd, slurmctld and munged, each only if the
# PID in its file is alive and is that program (a PID may have been reused).
# Leaves DIR's logs in place; a cluster that is not running is not an error.
set -uo pipefail

die() { echo "cluster-down: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: cluster-down.sh DIR"
[ -d "$1" ] || { echo "cluster-down: $1 does not exist; nothing to stop"; exit 0; }
dir="$(cd "$1" && pwd)"

# alive PIDFILE NAME: prints the PID when the file names a live process called NAME.
alive() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  echo "$pid"
}

# stop NAME:PIDFILE...: SIGTERM to each (together: each takes 1-2 s to exit),
# then SIGKILL to any still alive 10 s later.
stop() {
  local entry name file pid
  local -a pids=() names=() files=()
  for entry in "$@"; do
    name="${entry%%:*}" file="${entry#*:}"
    if pid="$(alive "$file" "$name")"; then
      kill -TERM "$pid" 2>/dev/null
      pids+=("$pid") names+=("$name") files+=("$file")
    fi
  done
  for _ in $(seq 100); do
    local running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "cluster-down: ${names[$i]} (PID ${pids[$i]}) ignored SIGTERM for 10 s; killing it" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null
    fi
    rm -f "${files[$i]}"
  done
}

# Jobs first, while the controller is up, so no job step outlives its slurmd.
if [ -f "$dir/etc/slurm.conf" ] && alive "$dir/run/slurmctld.pid" slurmctld >/dev/null; then
  export SLURM_CONF="$dir/etc/slurm.conf"
  if [ -n "$(squeue -h -o %A 2>/dev/null)" ]; then
    scancel --quiet --full $(squeue -h -o %A) 2>/dev/null
    # KillWait is 10 s in this cluster: wait a little longer for the steps to end.
    for _ in $(seq 60); do
      [ -z "$(squeue -h -t running,completing -o %A 2>/dev/null)" ] && break
      sleep 0.25
    done
  fi
fi

stop "slurmd:$dir/run/slurmd.pid" "slurmctld:$dir/run/slurmctld.pid" "munged:$dir/munge/munged.pid"
echo "cluster-down: stopped the cluster in $dir"
