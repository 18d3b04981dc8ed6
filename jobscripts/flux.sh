#!/bin/bash
# flux: --job-name=mpitune
# flux: -N 2                        # nodes
# flux: --exclusive                 # whole nodes: all their cores and GPUs
# flux: -t 4h                       # time limit of ONE job; the search may span many
# flux: --output=mpitune-flux-{{id}}.out
# flux: # --queue=pbatch            # site-specific (remove the "# " after "flux:")
# flux: # --bank=my_project
# =====================================================================================
# mpitune under Flux (flux-core >= 0.50): a batch job that stops cleanly before its time
# limit and submits its own continuation.
#
#   flux batch jobscripts/flux.sh my_spec.py
#   flux batch jobscripts/flux.sh my_spec.py --max-trials 2000 --sampler random
#
# Everything after the spec file is passed to mpitune (any setting as --kebab-case).
#
# NOT TESTED: there is no Flux on the machine where mpitune is developed. This script was
# written from the flux-core manual pages (flux-batch(1), flux-run(1), job dependencies,
# --signal, shell options); the parts that matter to mpitune (signal -> exit status 75
# -> run the same command again) are the same as in jobscripts/slurm_chain.sbatch, which
# is tested against a real Slurm. Try it with a short limit (e.g. -t 10m and
# WARN=2m) before a long search. What was run here: the script's control flow with a
# stand-in `flux` command (mpiexec plus a SIGUSR1 timer) and the real mpitune
# (SIGUSR1 -> exit 75 -> flux --parent batch --dependency=afterany:...), not Flux.
#
# How a job ends and the next one starts:
#   1. The script runs as the initial program of a Flux subinstance that owns the
#      allocation. `flux run` below starts the MPI job in that subinstance; a job with no
#      time limit of its own gets the time left in the subinstance (RFC 14), and
#      `--signal=SIGUSR1@$WARN` makes the job shell send SIGUSR1 to every rank WARN
#      before that limit. (Put --signal on `flux run`, not on `flux batch`: on the batch
#      job it would signal the subinstance's brokers, not the ranks.)
#   2. mpitune (rank 0) stops handing out trials, lets running trials finish within
#      --grace-period (default 5 s; after that a trial is interrupted at its next
#      trial.report and runs again in the next job), writes the results file and exits
#      with status 75; `flux run` exits with the largest task exit status, so 75.
#   3. This script sees 75 and submits itself again to the ENCLOSING instance
#      (`flux --parent batch`) with `--dependency=afterany:$FLUX_JOB_ID`: the next job
#      starts only after this one is inactive (two runs never write the same results
#      file at once) and resumes the search: finished trials are kept, interrupted ones
#      run again with the same parameters, the budget (--max-trials) is met exactly.
#   4. The chain ends when mpitune exits 0 (budget reached), with an error (2 bad spec,
#      3 results-file problem, 1 other), or after MAX_LINKS jobs.
#
# Beware: options given on the `flux batch` command line are not passed on to the
# continuation; put them in the `# flux:` directives at the top (submission directives,
# RFC 36: they must come first, right after the #! line; the continuation reads this
# same script), or in environment variables (flux batch copies the environment).
# =====================================================================================
# ---- environment -------------------------------------------------------------------
# module load gcc mvapich2 cuda          # <- your site's modules
# source "$HOME/venvs/mpitune/bin/activate"
#
# MPI under Flux: `flux run` offers PMI-1 ("simple", the default), which MPICH, MVAPICH
# and Intel MPI use; Open MPI 5 needs the flux-pmix plugin (add `-o pmi=pmix`), Cray
# MPICH `-o pmi=cray-pals`. mpi4py must be built against that MPI
# (pip install mpi4py --no-binary mpi4py). Check with:
#   flux run -n 2 python -c "from mpi4py import MPI; print(MPI.COMM_WORLD.size)"
#
# Knobs (environment variables; they travel with the continuation):
#   MPITUNE_PYTHON   the Python with mpitune installed (default: python on PATH)
#   STORAGE          the results file (default: SPEC's name with .h5, in the directory
#                    the job was submitted from). Same path = same search.
#   NTASKS           MPI ranks = 1 master + workers (default: 1 + GPUs of the allocation,
#                    or 1 + nodes x 4 when Flux lists no GPUs)
#   WARN             how long before the limit to send SIGUSR1, Flux standard duration
#                    (default 5m): longer than --grace-period plus writing the file
#   MAX_LINKS        the most jobs in one chain (default 20)
#   MPITUNE_CHAIN_LINK  set by the script itself: this job's number in the chain

SPEC=${1:?usage: flux batch flux.sh SPEC.py [--setting VALUE ...]}
shift
PYTHON=${MPITUNE_PYTHON:-python}
STORAGE=${STORAGE:-$PWD/$(basename "$SPEC" .py).h5}
WARN=${WARN:-5m}
MAX_LINKS=${MAX_LINKS:-20}
LINK=${MPITUNE_CHAIN_LINK:-1}
# This batch job's id in the enclosing instance (Flux unsets FLUX_JOB_ID in a batch
# script, the initial program of the subinstance; see flux-environment(7)).
JOBID=$(flux getattr jobid)

# The allocation, as flux-environment(7) suggests reading it.
NODES=$(flux resource list -n -o '{nnodes}' 2>/dev/null | head -n 1)
GPUS=$(flux resource list -n -o '{ngpus}' 2>/dev/null | head -n 1)
NODES=${NODES:-1}
if [ -z "${NTASKS:-}" ]; then
    if [ "${GPUS:-0}" -gt 0 ]; then NTASKS=$(( GPUS + 1 )); else NTASKS=$(( NODES * 4 + 1 )); fi
fi

export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

echo "flux: link $LINK of at most $MAX_LINKS, job $JOBID, $NODES node(s), ${GPUS:-0}" \
     "GPU(s), $NTASKS ranks, spec $SPEC, storage $STORAGE, started $(date '+%F %T')"

# -N/-n: the ranks spread over all nodes (rank 0, the master, on the first).
# GPUs: the job shell's gpu-affinity=on (its default) shows every task all GPUs of its
# node; mpitune then gives each worker its own (worker i of a node -> GPU i, round-robin
# beyond that) before the spec is imported. Do not use -g/--gpus-per-task here: the
# master would hold a GPU it does not use.
# exit-timeout=none: rank 0 may finish a moment after the workers; do not kill it.
status=0
flux run -N "$NODES" -n "$NTASKS" --signal=SIGUSR1@"$WARN" -o exit-timeout=none \
    "$PYTHON" -m mpitune "$SPEC" --storage "$STORAGE" "$@" || status=$?

# mpitune's exit status (the largest over all ranks, as flux run reports it):
#   0 search complete   75 stopped early: run again   2 bad spec or setting
#   3 results-file problem   1 anything else
echo "flux: link $LINK: mpitune exited with status $status at $(date '+%F %T')"
# A job ended by its launcher (a worker stuck in C code past the grace period, a node
# failure) may report a signal's status instead of 75, and a worker that exits 0 on its
# own (os._exit(0), a library's exit(0)) may end the job with 0: then the results file
# decides.
case "$status" in
    2|3|75) ;;
    *) "$PYTHON" -m mpitune status "$STORAGE" || [ $? -ne 75 ] || status=75 ;;
esac
if [ "$status" -eq 75 ]; then
    if [ "$LINK" -lt "$MAX_LINKS" ]; then
        # "$0" is Flux's copy of this script; flux batch reads it now. --parent: submit
        # to the enclosing instance, not to this job's own subinstance, which ends with
        # this script.
        next=$(flux --parent batch --dependency="afterany:$JOBID" \
                    --env="MPITUNE_CHAIN_LINK=$((LINK + 1))" \
                    "$0" "$SPEC" "$@") \
            && echo "flux: submitted link $((LINK + 1)) as job $next" \
            || echo "flux: could not submit the continuation; flux batch this script again"
    else
        echo "flux: $MAX_LINKS links done and the search is not complete;" \
             "flux batch this script again to continue"
    fi
fi
exit "$status"
