#!/bin/bash
# =====================================================================================
# mpitune under PBS Pro (or OpenPBS; Torque notes below): one job after another, each
# stopping cleanly before its walltime and submitting its own continuation.
#
#   qsub -v SPEC=my_spec.py jobscripts/pbs.sh
#   qsub -v "SPEC=my_spec.py,MPITUNE_ARGS=--max-trials 2000 --sampler random" jobscripts/pbs.sh
#
# NOT TESTED: there is no PBS on the machine where mpitune is developed. This script was
# written from the PBS Pro and Torque documentation; the parts that matter to mpitune
# (signal -> exit status 75 -> run the same command again) are the same as in
# jobscripts/slurm_chain.sbatch, which is tested against a real Slurm. Check the
# site-specific lines (queue, account, select statement, modules, mpiexec) first, and try
# it with a short walltime (e.g. 00:10:00 and WARN_SECONDS=120) before a long search.
# What was run here: the script's control flow with stand-ins for qstat and qsub and the
# real mpiexec and mpitune (timer -> SIGUSR1 -> exit 75 -> qsub -W depend=afterany:...;
# and SIGTERM to every process of the job -> exit 75 -> qsub), not PBS itself.
#
# How a job ends and the next one starts:
#   1. PBS has no "warn me N seconds before the walltime" option (Slurm's --signal), so
#      this script sets a timer itself: WARN_SECONDS before the walltime it sends SIGUSR1
#      to mpiexec, which passes it to every rank (MPICH's and Intel MPI's hydra, Open
#      MPI's mpirun and Cray PALS all forward SIGUSR1).
#   2. mpitune (rank 0) stops handing out trials, lets running trials finish within
#      --grace-period (default 5 s; after that a trial is interrupted at its next
#      trial.report and runs again in the next job), writes the results file and exits
#      with status 75.
#   3. This script sees 75 and submits itself again with
#      `qsub -W depend=afterany:$PBS_JOBID`: the next job starts only after this one
#      has ended (two runs never write the same results file at once) and resumes the
#      search from the results file: finished trials are kept, interrupted ones run
#      again with the same parameters, the budget (--max-trials) is met exactly.
#   4. The chain ends when mpitune exits 0 (budget reached), with an error (2 bad spec,
#      3 results-file problem, 1 other), or after MAX_LINKS jobs.
#
# If the walltime is reached anyway, PBS sends SIGTERM to every process of the job and
# SIGKILL kill_delay seconds later (a queue setting, often 10 s). mpitune treats SIGTERM
# like SIGUSR1 (here the ranks get it twice, directly and from mpiexec, and a second
# signal interrupts running trials at once: they run again next time); the trap below
# keeps this shell alive long enough to see the exit status if mpitune finishes within
# kill_delay. Nothing that finished is lost even after
# SIGKILL (rank 0 journals every result within milliseconds): qsub again to continue.
#
# A simpler alternative to the timer: pass --max-time SECONDS (walltime minus the
# longest trial minus a few minutes) in MPITUNE_ARGS. mpitune then starts no new trial
# after that time, lets the running ones finish, and exits 75 as well.
# =====================================================================================

#PBS -N mpitune
# Resources, PBS Pro syntax: 2 chunks (nodes) with 64 cores, 4 GPUs and 5 MPI ranks
# each. Rank 0 (the master, about one core, no GPU) goes in the first chunk beside 4
# workers; the second chunk's fifth rank is a spare worker that shares a GPU.
# For exactly 1 master + 8 workers use:
#   -l select=1:ncpus=64:ngpus=4:mpiprocs=5+1:ncpus=64:ngpus=4:mpiprocs=4
#PBS -l select=2:ncpus=64:ngpus=4:mpiprocs=5
#PBS -l walltime=04:00:00
#PBS -j oe
#PBS -o mpitune-pbs.log
# Site-specific lines you may need (Polaris-like systems also want -l filesystems=...):
##PBS -q workq
##PBS -A my_project
#
# Torque/Moab instead of PBS Pro: replace the select line with
#   #PBS -l nodes=2:ppn=5:gpus=4
# Torque can also pass arguments to the script (qsub -F "my_spec.py --max-trials 100");
# PBS Pro cannot, hence SPEC and MPITUNE_ARGS as environment variables (qsub -v).

# ---- environment -------------------------------------------------------------------
# module load gcc openmpi cuda           # <- your site's modules
# source "$HOME/venvs/mpitune/bin/activate"
#
# Knobs (pass them with qsub -v NAME=VALUE,...; the continuation gets them again):
#   SPEC             the spec file (required), relative to the directory of qsub
#   MPITUNE_ARGS     more mpitune options, e.g. "--max-trials 2000" (no commas: qsub -v
#                    splits at commas)
#   STORAGE          the results file (default: SPEC's name with .h5 in that directory)
#   MPITUNE_PYTHON   the Python with mpitune and mpi4py (default: python on PATH)
#   MPIEXEC          the MPI launcher (default: mpiexec on PATH). Use the one of the MPI
#                    that mpi4py was built against. Cray PALS needs per-node placement:
#                    MPIEXEC_ARGS="--ppn 5 --depth 12 --cpu-bind depth"
#   MPIEXEC_ARGS     extra launcher arguments (default: none)
#   WARN_SECONDS     how long before the walltime to send SIGUSR1 (default 300): longer
#                    than --grace-period plus the time to write the results file
#   MAX_LINKS        the most jobs in one chain (default 20)
#   MPITUNE_JOBSCRIPT  this script's absolute path, for the continuation (default: $0
#                    when PBS runs the script from a file; some PBS versions feed it to
#                    the shell on standard input: then set -v MPITUNE_JOBSCRIPT=$PWD/pbs.sh)
#   MPITUNE_CHAIN_LINK  set by the script itself: this job's number in the chain

cd "${PBS_O_WORKDIR:-$PWD}" || exit 1   # PBS starts jobs in $HOME

SPEC=${SPEC:?set SPEC: qsub -v SPEC=my_spec.py jobscripts/pbs.sh}
STORAGE=${STORAGE:-$PWD/$(basename "$SPEC" .py).h5}
PYTHON=${MPITUNE_PYTHON:-python}
MPIEXEC=${MPIEXEC:-mpiexec}
WARN_SECONDS=${WARN_SECONDS:-300}
MAX_LINKS=${MAX_LINKS:-20}
LINK=${MPITUNE_CHAIN_LINK:-1}
SELF=${MPITUNE_JOBSCRIPT:-$0}
read -r -a EXTRA <<< "${MPITUNE_ARGS:-}"
read -r -a LAUNCHER_ARGS <<< "${MPIEXEC_ARGS:-}"

# One rank per line of the node file (PBS Pro writes one line per mpiprocs slot).
NRANKS=${NRANKS:-$(wc -l < "$PBS_NODEFILE")}

export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# The walltime of this job in seconds, from qstat (HH:MM:SS, or MM:SS, or seconds).
walltime=$(qstat -f "$PBS_JOBID" 2>/dev/null \
           | sed -n 's/^ *Resource_List.walltime = //p' | head -n 1)
walltime_s=$(echo "${walltime:-0}" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++)
                                                  s = s * 60 + $i; print int(s) }')

echo "pbs: link $LINK of at most $MAX_LINKS, job $PBS_JOBID, $NRANKS ranks," \
     "walltime ${walltime:-unknown}, spec $SPEC, storage $STORAGE, started $(date '+%F %T')"

# Keep this shell alive on SIGTERM (walltime, qdel): mpiexec gets it too and stops the
# search; the loop around `wait` below then still collects mpitune's exit status.
trap 'echo "pbs: SIGTERM (walltime or qdel); waiting for mpitune to stop"' TERM

# --no-bind-gpus is NOT given: every worker gets its own GPU of its node (worker i of a
# node -> GPU i of the GPUs that the node shows it, round-robin beyond that).
"$MPIEXEC" -n "$NRANKS" "${LAUNCHER_ARGS[@]}" \
    "$PYTHON" -m mpitune "$SPEC" --storage "$STORAGE" "${EXTRA[@]}" &
mpiexec_pid=$!

# The warning timer: SIGUSR1 to mpiexec WARN_SECONDS before the walltime. $SECONDS is
# how long this script has run, about how long the job has run.
timer_pid=""
if [ "$walltime_s" -gt 0 ]; then
    delay=$(( walltime_s - WARN_SECONDS - SECONDS ))
    [ "$delay" -lt 0 ] && delay=0
    ( sleep "$delay" && echo "pbs: ${WARN_SECONDS} s before the walltime: SIGUSR1" \
      && kill -USR1 "$mpiexec_pid" ) &
    timer_pid=$!
else
    echo "pbs: walltime unknown (qstat failed): no warning signal; consider --max-time"
fi

# `wait` returns early when a trapped signal arrives; wait again until mpiexec is gone.
wait "$mpiexec_pid"
status=$?
while kill -0 "$mpiexec_pid" 2>/dev/null; do
    wait "$mpiexec_pid"
    status=$?
done
[ -n "$timer_pid" ] && kill "$timer_pid" 2>/dev/null

# mpitune's exit status (the highest over all ranks, as mpiexec reports it):
#   0 search complete   75 stopped early: run again   2 bad spec or setting
#   3 results-file problem   1 anything else
echo "pbs: link $LINK: mpitune exited with status $status at $(date '+%F %T')"
# A job ended by its launcher (a worker stuck in C code past the grace period, a node
# failure) may report a signal's status instead of 75, and a worker that exits 0 on its
# own (os._exit(0), a library's exit(0)) may end the job with 0: then the results file
# decides.
case "$status" in
    2|3|75) ;;
    *) "$PYTHON" -m mpitune status "$STORAGE" || [ $? -ne 75 ] || status=75 ;;
esac
if [ "$status" -eq 75 ]; then
    if [ ! -r "$SELF" ]; then
        echo "pbs: cannot find this script to submit it again (\$0 is '$0'); set" \
             "MPITUNE_JOBSCRIPT, and qsub this script again now to continue"
    elif [ "$LINK" -lt "$MAX_LINKS" ]; then
        # qsub reads the script now. Some sites do not allow qsub on compute nodes: then
        # submit the same command again by hand (or from a login-node cron job).
        # The knobs go to the next job again (qsub -v: comma-separated NAME=VALUE).
        vars="SPEC=$SPEC,STORAGE=$STORAGE,MPITUNE_ARGS=${MPITUNE_ARGS:-}"
        vars+=",MPITUNE_PYTHON=$PYTHON,MPIEXEC=$MPIEXEC,MPIEXEC_ARGS=${MPIEXEC_ARGS:-}"
        vars+=",WARN_SECONDS=$WARN_SECONDS,MAX_LINKS=$MAX_LINKS,MPITUNE_JOBSCRIPT=$SELF"
        vars+=",MPITUNE_CHAIN_LINK=$((LINK + 1))"
        next=$(qsub -W depend=afterany:"$PBS_JOBID" -v "$vars" "$SELF") \
            && echo "pbs: submitted link $((LINK + 1)) as job $next" \
            || echo "pbs: could not submit the continuation; qsub this script again"
    else
        echo "pbs: $MAX_LINKS links done and the search is not complete; qsub again"
    fi
fi
exit "$status"
