#!/bin/bash
# via render job for Slurm, written by `via submit`. (Its template is
# slurm/job_template.sh in via's sources: `via submit` fills in the names in
# double braces; one alone on a line stands for zero or more lines.)
#
# What this job does
#  * Runs `via render` with one rank per GPU (or per task on CPU nodes) on
#    every node it gets, started by srun with PMIx (`--mpi=pmix`: Debian's
#    Open MPI has PMIx but no PMI-2). `--kill-on-bad-exit=1`: a rank that dies
#    ends the step instead of leaving the others waiting.
#  * Always passes --resume: the first run starts the render, every later
#    run (a requeue, or this script submitted again by hand) continues it
#    from the work directory, redoing only unfinished frames.
#  * Time limit: Slurm sends this script SIGUSR1 {{warning_seconds}} s before the
#    limit, or earlier (it checks limits every 30 s; its manual says up to a
#    minute earlier). The script passes it to the ranks, which stop at their
#    next denoising step (every finished frame is already on disk) and exit
#    with 75 ("stopped, resume me"). The script then requeues the job with
#    `scontrol requeue`; the requeued job keeps its job id and resumes. The
#    margin must cover one denoising step and the ranks' exit, not the whole
#    frame in hand.
#  * Preemption, `scontrol requeue` or `scancel`: Slurm sends SIGTERM to the
#    script and the ranks. The ranks stop the same way; Slurm requeues the job
#    itself when that is what it is doing, so the script only exits.
#  * Exit code 75 without a warning (someone sent SIGUSR1 to the ranks,
#    e.g. `scancel --signal=USR1 JOBID`) also requeues.
#  * After {{max_restarts}} restarts it stops requeueing (a time limit too short for
#    any progress would otherwise loop forever): submit it again to go on.
#  * --open-mode=append: every run of the job appends to the same log.
#  * --kill-on-invalid-dep=yes: a job that waits for another (--dependency)
#    is cancelled when that one fails, instead of waiting forever.
#
# Exit status: 0 when the output is written, 75 when stopped for a later
# resume, otherwise the render's own exit status (1: an error, in the log).
# A job ended by Slurm itself (scancel, preemption) may show Slurm's status
# instead, and srun signalled itself with SIGTERM kills the ranks with
# SIGKILL and exits 137. What the work directory records is authoritative:
# `via status --json WORKDIR` gives "state": "stopped by SIGTERM" (SIGUSR1,
# SIGINT) when the render stopped with its finished work kept, "stopped
# without a record (killed?)" when the ranks were killed outright (both:
# resume it), "failed" (and "message") on an error, "finished" when the
# output is written; the ranks record a stop as soon as the signal arrives.
#
#SBATCH --job-name={{job_name}}
#SBATCH --nodes={{nodes}}
#SBATCH --ntasks-per-node={{ntasks_per_node}}
{{sbatch_resources}}
#SBATCH --signal=B:USR1@{{warning_seconds}}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={{log}}
#SBATCH --kill-on-invalid-dep=yes
{{sbatch_extra}}

set -uo pipefail  # not -e: srun's exit status is examined below

via={{via}}
max_restarts={{max_restarts}}
# The render's settings: the arguments of `via render` (absolute paths).
{{render_arguments}}

say() { echo "via job ${SLURM_JOB_ID:-?} ($(date '+%F %T')): $*" >&2; }

warned=0 terminated=0 interrupted=0 srun_pid=
on_warning() {
  warned=1 interrupted=1
  say "time limit near (SIGUSR1): the ranks stop at their next denoising step"
  if [ -n "$srun_pid" ]; then kill -USR1 "$srun_pid" 2>/dev/null; fi
}
trap on_warning USR1
trap 'terminated=1 interrupted=1' TERM

say "render starts (restart ${SLURM_RESTART_COUNT:-0}; ranks: ${SLURM_NTASKS:-?}; nodes: ${SLURM_JOB_NUM_NODES:-?})"
srun --mpi=pmix --kill-on-bad-exit=1 {{srun_options}}"$via" render "${args[@]}" --resume &
srun_pid=$!
# A warning that came before srun_pid was known.
if [ "$warned" = 1 ]; then kill -USR1 "$srun_pid" 2>/dev/null; fi
# `wait` returns early when a trapped signal arrives: wait again until srun ends.
while :; do
  interrupted=0
  wait "$srun_pid"
  rc=$?
  [ "$interrupted" = 1 ] || break
done
# bash (5.2) can lose the status of a child that ends while a trap runs and
# then reports -1; only a signal runs a trap, and on one the ranks exit 75.
if [ "$rc" -lt 0 ] || [ "$rc" -gt 255 ]; then rc=75; fi

if [ "$rc" -eq 0 ]; then
  say "render complete"
  exit 0
fi
if [ "$terminated" = 1 ]; then
  say "ended by Slurm (SIGTERM: cancelled, preempted or requeued; a requeued job resumes by itself)"
  exit "$rc"
fi
if [ "$rc" -eq 75 ] || [ "$warned" = 1 ]; then
  if [ "${SLURM_RESTART_COUNT:-0}" -ge "$max_restarts" ]; then
    say "stopped (exit $rc) after $max_restarts restarts: not requeueing; submit this script again to resume"
    exit 75
  fi
  say "stopped (exit $rc); requeueing to resume"
  # On success Slurm ends this run of the job and queues it again.
  if scontrol requeue "${SLURM_JOB_ID:-}"; then exit 75; fi
  say "scontrol requeue failed; submit this script again to resume"
  exit 75
fi
say "render failed (exit $rc)"
exit "$rc"
