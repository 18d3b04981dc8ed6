"""Pruners: the rules as pure functions (no MPI), the online classes against those
references, restore from a trial table, the settings, and end to end under mpiexec.

End-to-end runs check the results file with :func:`mpitune.load`: pruned trials have state
"pruned" and keep their curve up to where they stopped; an objective that catches
TrialPruned and returns is still stored as pruned; nan/inf reports do not crash rank 0; a
resumed search rebuilds ASHA's rungs from the stored curves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_mpi, write_spec

import mpitune
from mpitune.errors import SpecError
from mpitune.pruners import (
    ASHAPruner,
    HyperbandPruner,
    MedianPruner,
    Pruner,
    check_pruner,
    make_pruner,
    to_loss,
)
from mpitune.pruners._asha import (
    asha_stop_rungs,
    promotable,
    reached,
    rung_resources,
    rung_values,
)
from mpitune.pruners._hyperband import assign_brackets, bracket_budgets, n_brackets
from mpitune.pruners._median import median_of_sorted, median_prune, median_stop_steps
from mpitune.settings import Settings
from mpitune.table import COMPLETE, FINISHED, INTERRUPTED, PRUNED, TrialTable

INF, NAN = math.inf, math.nan


def feed(pruner: Pruner, curves, direction="minimize") -> dict[int, float]:
    """Run ``curves`` one trial after another through ``pruner``; {trial: stopping step}."""
    pruner.bind(direction)
    stopped = {}
    for number, (steps, values) in enumerate(curves):
        for s, v in zip(steps, values):
            if pruner.observe([number], [s], [v]):
                stopped[number] = s
                break
        pruner.finished([number], [PRUNED if number in stopped else COMPLETE], [NAN])
    return stopped


def flat(final, steps=range(1, 28)):
    """A curve that falls from final + 1 to final: ranks never cross."""
    steps = list(steps)
    return steps, [final + 1.0 / s for s in steps]


# ---- losses -------------------------------------------------------------------------------
def test_to_loss_negates_for_maximize_and_makes_non_finite_the_worst():
    assert to_loss([1.0, -2.0], "minimize").tolist() == [1.0, -2.0]
    assert to_loss([1.0, -2.0], "maximize").tolist() == [-1.0, 2.0]
    for direction in ("minimize", "maximize"):
        assert to_loss([NAN, INF, -INF], direction).tolist() == [INF, INF, INF]
    p = MedianPruner()
    p.bind("maximize")
    assert p.loss(2.0) == -2.0 and p.loss(NAN) == INF and p.loss(INF) == INF


# ---- median stopping rule ------------------------------------------------------------------
def test_median_of_sorted():
    assert median_of_sorted([1.0]) == 1.0
    assert median_of_sorted([1.0, 3.0]) == 2.0
    assert median_of_sorted([1.0, 2.0, 10.0]) == 2.0
    assert median_of_sorted([1.0, INF]) == INF
    assert median_of_sorted([INF, INF]) == INF
    assert math.isnan(median_of_sorted([]))


def test_median_prune_respects_warmup_min_trials_and_strictness():
    others = [1.0, 2.0, 3.0]
    assert median_prune(2.5, others, 5, 0, 3)
    assert not median_prune(2.0, others, 5, 0, 3)  # equal to the median: goes on
    assert not median_prune(2.5, others, 5, 6, 3)  # in warm-up
    assert not median_prune(2.5, others, 5, 0, 4)  # too few others
    assert not median_prune(INF, [INF, INF], 1, 0, 1)  # everyone diverged: nobody is worse


def test_median_stops_a_bad_trial_at_the_first_step_after_warmup():
    curves = [flat(f) for f in (0.1, 0.2, 0.3, 0.4, 0.5)] + [flat(5.0)]
    stops = median_stop_steps(curves, warmup_steps=4, min_trials=5)
    assert np.isnan(stops[:5]).all()
    assert stops[5] == 4
    assert feed(MedianPruner(warmup_steps=4, min_trials=5), curves) == {5: 4}
    # fewer than min_trials others at each step: nothing is stopped
    assert np.isnan(median_stop_steps(curves, min_trials=6)).all()


def test_median_uses_the_best_value_so_far():
    """A trial that was good once is judged by its best value, not its latest."""
    good = [flat(f) for f in (1.0, 1.1, 1.2, 1.3, 1.4)]
    steps = list(range(1, 28))
    spiky = (steps, [0.0 if s == 1 else 100.0 for s in steps])  # best-so-far stays 0
    assert np.isnan(median_stop_steps(good + [spiky], min_trials=5)).all()


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_median_never_stops_the_best_trial_and_mirrors_for_maximize(direction):
    sign = 1.0 if direction == "minimize" else -1.0
    rng = np.random.default_rng(1)
    finals = rng.uniform(0, 1, 40)
    finals[17] = -1.0  # the best, whatever comes before it
    finals[20] = 2.0  # the worst
    curves = [(s, [sign * x for x in v]) for s, v in (flat(f) for f in finals)]
    stops = median_stop_steps(curves, direction=direction, min_trials=3)
    assert np.isnan(stops[17])
    assert stops[20] == 1
    online = feed(MedianPruner(min_trials=3), curves, direction)
    assert online == {i: s for i, s in enumerate(stops) if not np.isnan(s)}


def test_median_treats_non_finite_reports_as_worst():
    curves = [flat(f) for f in (1.0, 1.1, 1.2, 1.3, 1.4)]
    steps = list(range(1, 28))
    for bad in (NAN, INF, -INF):
        assert median_stop_steps(curves + [(steps, [bad] * 27)], min_trials=5)[-1] == 1
        assert feed(MedianPruner(min_trials=5), curves + [(steps, [bad] * 27)]) == {5: 1}
    # in a maximisation too: +inf is not "the best"
    neg = [(s, [-x for x in v]) for s, v in curves]
    assert median_stop_steps(neg + [(steps, [INF] * 27)], "maximize", min_trials=5)[-1] == 1


# ---- ASHA ----------------------------------------------------------------------------------
def test_rung_resources():
    assert rung_resources(1, 3, 27).tolist() == [1, 3, 9]
    assert rung_resources(1, 3, 28).tolist() == [1, 3, 9, 27]
    assert rung_resources(2, 2, None, up_to=20).tolist() == [2, 4, 8, 16]
    # rounding: 0.1 * 3**2 is 0.9000000000000001, and step 0.9 reaches it
    r = rung_resources(0.1, 3, 2.7)
    assert len(r) == 3 and reached(0.9, r[2]) and not reached(0.89, r[2])
    with pytest.raises(ValueError):
        rung_resources(1, 3, None)


@pytest.mark.parametrize("make", [lambda: ASHAPruner(1, 3, None),
                                  lambda: ASHAPruner(1, 1000, None),
                                  lambda: HyperbandPruner(1, 3, 81)])
def test_steps_near_the_float_limit_find_no_rung_there(make):
    """A finite step of 1.7e308 (3**646 overflows a float) used to crash rank 0."""
    curves = [([1, 2, 1.7e308], [float(i), float(i), float(i)]) for i in range(6)]
    feed(make(), curves)
    assert rung_resources(1, 3, None, up_to=1.7e308)[-1] < 1.7e308
    assert rung_resources(1, 1000, None, up_to=1.7e308).size == 103  # 1e306, not 1e309


def test_rung_values_take_the_first_step_at_or_past_each_rung():
    steps = [0, 2, 5, 10, 11]
    values = [9.0, 8.0, 7.0, 6.0, 5.0]
    out = rung_values(steps, values, [1, 3, 9, 27])
    assert out[:3].tolist() == [8.0, 7.0, 6.0] and np.isnan(out[3])
    assert rung_values(steps, values, [1, 3], "maximize").tolist() == [-8.0, -7.0]
    assert rung_values([1, 3], [NAN, -INF], [1, 3]).tolist() == [INF, INF]


def test_promotable_keeps_the_top_fraction_and_always_one():
    assert promotable(5.0, [5.0], 3)  # first at the rung
    assert not promotable(5.0, [4.0, 5.0], 3)
    assert promotable(4.0, [4.0, 5.0], 3)
    rung = sorted(range(9))  # 9 values: the best 3 go on
    assert [promotable(x, rung, 3) for x in range(9)] == [True] * 3 + [False] * 6
    assert promotable(2.0, [1.0, 2.0, 2.0, 2.0, 7.0, 8.0], 3)  # ties with the 2nd go on


def test_asha_stops_bad_trials_at_the_right_rung():
    # nine good trials fill the rungs, then: bad from the start -> rung 0 (step 1); good at
    # steps 1 and 3 but bad by step 9 -> rung 2; the best -> never stopped
    curves = [flat(1.0 + 0.1 * i) for i in range(9)]
    steps = list(range(1, 28))
    late = (steps, [0.0 + 1.0 / s if s < 9 else 50.0 for s in steps])
    curves += [flat(10.0), late, flat(0.0)]
    stops = asha_stop_rungs(curves, 1, 3, 27)
    assert stops[9] == 0 and stops[10] == 2 and stops[11] == -1
    assert feed(ASHAPruner(1, 3, 27), curves) == {
        i: rung_resources(1, 3, 27)[k] for i, k in enumerate(stops) if k >= 0}


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("max_resource", [27, None])
def test_asha_online_matches_the_reference_and_never_stops_a_best_trial(direction,
                                                                      max_resource):
    sign = 1.0 if direction == "minimize" else -1.0
    rng = np.random.default_rng(7)
    curves, best_so_far = [], INF
    for _ in range(200):
        final = rng.uniform(0, 1)
        speed = rng.uniform(0.2, 3)
        steps = sorted(rng.choice(np.arange(1, 41), size=12, replace=False).tolist())
        values = [final + math.exp(-speed * s) for s in steps]  # crossing curves
        curves.append((steps, [sign * v for v in values]))
        best_so_far = min(best_so_far, final)
    stops = asha_stop_rungs(curves, 1, 3, max_resource, direction)
    resources = rung_resources(1, 3, max_resource, up_to=40)
    online = feed(ASHAPruner(1, 3, max_resource), curves, direction)
    expected = {}
    for i, k in enumerate(stops):
        if k >= 0:  # the stopping step: the first reported step at or past the rung
            expected[i] = next(s for s in curves[i][0] if reached(s, resources[k]))
    assert online == expected
    assert 0 < len(online) < len(curves)
    # a trial best at every rung it reaches always goes on, first or last
    assert stops[0] == -1
    steps = list(range(1, 41))
    dominant = (steps, [sign * -10.0] * len(steps))
    assert asha_stop_rungs(curves + [dominant], 1, 3, max_resource, direction)[-1] == -1


def test_asha_skipped_rungs_all_get_the_value_and_non_finite_is_worst():
    p = ASHAPruner(1, 3, None)
    p.bind("minimize")
    assert p.observe([0], [10.0], [1.0]) == []  # one report past rungs 1, 3 and 9
    assert p.rung_sizes()[:3] == [1, 1, 1]
    assert p.observe([1, 1], [1.0, 2.0], [NAN, 0.0]) == [1]  # nan: worst -> stopped
    assert p.observe([1], [3.0], [0.0]) == []  # a stopped trial is never returned again
    assert p.rung_sizes()[:3] == [2, 1, 1]
    assert p.observe([2], [1.0], [-INF]) == [2]  # -inf when minimising is worst too


def test_asha_maximize_mirrors_minimize():
    curves = [flat(f) for f in np.random.default_rng(3).uniform(0, 1, 60)]
    mirrored = [(s, [-x for x in v]) for s, v in curves]
    a = feed(ASHAPruner(1, 3, 27), curves, "minimize")
    b = feed(ASHAPruner(1, 3, 27), mirrored, "maximize")
    assert a == b and a
    c = feed(ASHAPruner(1, 3, 27), curves, "maximize")  # the wrong direction differs
    assert c != a


# ---- Hyperband -------------------------------------------------------------------------------
def test_hyperband_brackets_and_budgets():
    assert n_brackets(1, 27, 3) == 4
    assert n_brackets(1, 26.9, 3) == 3
    assert n_brackets(1, 1, 3) == 1
    assert bracket_budgets(4, 3).tolist() == [27, 12, 6, 4]  # ceil(4 * 3**s / (s + 1))
    numbers = np.arange(10_000)
    b = assign_brackets(numbers, [27, 12, 6, 4])
    share = np.bincount(b, minlength=4) / len(numbers)
    assert np.allclose(share, np.array([27, 12, 6, 4]) / 49, atol=0.005)
    assert (assign_brackets(numbers, [27, 12, 6, 4]) == b).all()  # by number alone
    first = assign_brackets(np.arange(49), [27, 12, 6, 4])
    assert np.bincount(first, minlength=4).min() >= 3  # well mixed from the start


def test_hyperband_brackets_compete_separately():
    p = HyperbandPruner(1, 3, 27)
    p.bind("minimize")
    assert [lad.min_resource for lad in p.ladders] == [1, 3, 9, 27]
    assert [lad.resource(0) for lad in p.ladders] == [1, 3, 9, None]
    numbers = list(range(200))
    brackets = [p.bracket(n) for n in numbers]
    steps = list(range(1, 28))
    stopped = {}
    for n in numbers:  # later trials are worse: in its bracket, each is stopped at rung 0
        for s in steps:
            if p.observe([n], [s], [n + 1.0 / s]):
                stopped[n] = s
                break
        p.finished([n], [COMPLETE], [NAN])
    for b, first_rung in enumerate([1, 3, 9]):
        members = [n for n in numbers if brackets[n] == b]
        assert members[0] not in stopped  # the first trial of a bracket goes on
        assert all(stopped[n] == first_rung for n in members[1:])
    assert not any(n in stopped for n in numbers if brackets[n] == 3)  # never stops
    with pytest.raises(ValueError):
        HyperbandPruner(1, 3, None)


# ---- restore ---------------------------------------------------------------------------------
def table_from_run(pruner: Pruner, curves, interrupted=()) -> tuple[TrialTable, set]:
    """Interleave ``curves`` point by point (as parallel workers would), feed the pruner,
    and record everything in a TrialTable the way the master does."""
    table = TrialTable(1)
    table.add(np.zeros((len(curves), 1)))
    stopped: set = set()
    longest = max(len(s) for s, _ in curves)
    for j in range(longest):
        for n, (steps, values) in enumerate(curves):
            if j < len(steps) and n not in stopped:
                table.add_curve([n], [steps[j]], [values[j]], [0.0])
                stopped.update(pruner.observe([n], [steps[j]], [values[j]]))
    numbers = [n for n in range(len(curves)) if n not in interrupted]
    states = [PRUNED if n in stopped else COMPLETE for n in numbers]
    table.finish(numbers, states, [0.0] * len(numbers), [0.0] * len(numbers),
                 [1.0] * len(numbers))
    pruner.finished(numbers, states, [0.0] * len(numbers))
    table.state.data[list(interrupted)] = INTERRUPTED
    return table, stopped


@pytest.mark.parametrize("make", [lambda: ASHAPruner(1, 3, 27),
                                  lambda: HyperbandPruner(1, 3, 27),
                                  lambda: MedianPruner(min_trials=3)])
def test_restore_rebuilds_the_same_state_from_the_table(make):
    rng = np.random.default_rng(5)
    curves = [flat(f) for f in rng.uniform(0, 1, 80)]
    live = make()
    live.bind("minimize")
    table, stopped = table_from_run(live, curves)
    assert stopped
    again = make()
    again.bind("minimize")
    again.restore(table)
    if isinstance(live, MedianPruner):
        assert again._by_step == live._by_step
    else:
        assert again.rung_sizes() == live.rung_sizes()
        ladders = live.ladders if isinstance(live, HyperbandPruner) else [live.ladder]
        redo = again.ladders if isinstance(again, HyperbandPruner) else [again.ladder]
        assert [lad.rungs for lad in redo] == [lad.rungs for lad in ladders]
    # nothing per-trial survives for finished trials
    assert not getattr(again, "_next", {}) and not getattr(again, "_best", {})
    # the next trial is judged exactly as the uninterrupted pruner judges it
    probe = 999
    if isinstance(live, HyperbandPruner):
        probe = next(n for n in range(1000, 2000) if live.bracket(n) == 0)
    for pruner in (live, again):
        assert pruner.observe([probe], [1.0], [5.0]) == [probe]


def test_restore_skips_interrupted_trials_which_report_again():
    curves = [flat(f) for f in (0.5, 0.1, 0.2)]
    live = ASHAPruner(1, 3, 27)
    live.bind("minimize")
    table, _ = table_from_run(live, curves, interrupted=(1,))
    again = make_pruner(Settings(pruner="asha", max_resource=27), table)
    # live, trial 2 was stopped at step 1 behind trial 1; the replay counts trials 0 and 2
    # at rung 0 and trial 0 above it, not trial 1, which runs again
    assert again.rung_sizes() == [2, 1, 1]
    assert again.observe([1], [1.0], [0.1]) == []  # its re-run starts afresh


# ---- settings --------------------------------------------------------------------------------
def test_make_pruner_from_settings():
    assert make_pruner(Settings()) is None  # the default costs nothing
    p = make_pruner(Settings(pruner="asha", min_resource=2, reduction_factor=4,
                             max_resource=64, direction="maximize"))
    assert isinstance(p, ASHAPruner) and p.direction == "maximize"
    assert p.ladder.resource(0) == 2 and p.ladder.resource(2) == 32
    assert p.ladder.resource(3) is None
    assert isinstance(make_pruner(Settings(pruner="median", warmup_steps=3)), MedianPruner)
    h = make_pruner(Settings(pruner="hyperband", max_resource=9))
    assert isinstance(h, HyperbandPruner) and len(h.ladders) == 3
    mine = MedianPruner(min_trials=2)
    assert make_pruner(Settings(pruner=mine)) is mine
    assert "MedianPruner(" in Settings(pruner=mine).to_json()
    check_pruner("none")


@pytest.mark.parametrize("changes, name, rule", [
    ({"pruner": "bogus"}, "pruner", "must be one of none, median, asha, hyperband"),
    ({"pruner": 3}, "pruner", "must be one of"),
    ({"min_resource": 0}, "min_resource", "must be a number > 0"),
    ({"min_resource": math.inf}, "min_resource", "must be a number > 0"),
    ({"max_resource": 0.5}, "max_resource", "must be None (unknown) or a number >= "
                                            "min_resource (1)"),
    ({"pruner": "hyperband"}, "max_resource", "pruner 'hyperband' needs it"),
    ({"reduction_factor": 1}, "reduction_factor", "must be an integer in 2..1000"),
    ({"reduction_factor": 2.5}, "reduction_factor", "must be an integer in 2..1000"),
    ({"warmup_steps": -1}, "warmup_steps", "must be a number >= 0"),
])
def test_settings_validate_pruner_settings(changes, name, rule):
    s = Settings(**changes)
    with pytest.raises(SpecError) as e:
        s.validate()
    assert str(e.value).startswith(f"setting '{name}' is {getattr(s, name)!r}, but ")
    assert rule in str(e.value)


def test_settings_accept_good_pruner_settings():
    Settings(pruner="asha", min_resource=0.5, max_resource=100.0, reduction_factor=2,
             warmup_steps=3).validate()
    Settings(pruner="hyperband", max_resource=81).validate()


# ---- end to end --------------------------------------------------------------------------------
SPEC = '''
import math
import time
from mpitune import Real, TrialPruned

space = {"x": Real(0.0, 1.0)}
STEPS = 27


def objective(params, trial):
    x = params["x"]
    caught = trial.number % 2 == 1  # odd trials catch TrialPruned and return a value
    for step in range(1, STEPS + 1):
        time.sleep(0.003)
        value = x + 1.0 / step
        if trial.number % 5 == 2:  # some trials diverge: nan, then inf
            value = math.nan if step % 2 else math.inf
        try:
            trial.report(step, value)
        except TrialPruned:
            if caught:
                return {"value": x, "caught": 1.0}
            raise
    return {"value": x, "caught": 0.0}
'''


def decisions(path, pruner: Pruner):
    """Replay a results file's curves (in arrival order) through a fresh pruner:
    {trial: step at which it was stopped}. Equals what rank 0 decided during the run."""
    r = mpitune.load(path)
    pruner.bind(r.direction)
    out = {}
    for n, s, v in zip(r.curves["trial"].tolist(), r.curves["step"].tolist(),
                       r.curves["value"].tolist()):
        if pruner.observe([n], [s], [v]):
            out[n] = s
    return r, out


@pytest.fixture(scope="module")
def asha_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha")
    spec = write_spec(tmp, SPEC)
    res = run_mpi(4, [spec, "--pruner", "asha", "--max-resource", "27", "--max-trials", "60",
                      "--storage", "r.h5", "--progress-interval", "0", "--sampler", "sobol"],
                  cwd=tmp, timeout=60)
    assert res.returncode == 0, res.describe()
    return str(tmp / "r.h5"), res


def test_e2e_asha_prunes_and_keeps_curves_up_to_the_stopping_step(asha_run):
    path, _ = asha_run
    r, decided = decisions(path, ASHAPruner(1, 3, 27))
    states = r["state"]
    assert set(states) <= {"complete", "pruned"}
    pruned = np.flatnonzero(states == "pruned")
    complete = np.flatnonzero(states == "complete")
    assert len(pruned) >= 20 and len(complete) >= 1  # about 60 / 3**3 = 2 run to the end
    assert set(pruned.tolist()) <= set(decided)  # only what the rule decided
    for n in pruned:
        steps, _ = r.curve(n)
        # the curve runs from step 1 without gaps up to the rung where it was stopped: at
        # a rung the worker waits for the verdict, so no step runs past it
        assert steps.tolist() == list(range(1, len(steps) + 1))
        assert steps[-1] == decided[n] and decided[n] in (1, 3, 9)
    for n in complete:
        assert r.curve(n)[0].tolist() == list(range(1, 28))
    # every trial the rule stopped was stopped (none ran on and finished first)
    assert all(states[n] == "pruned" for n in decided)


def test_e2e_caught_trial_pruned_is_still_stored_as_pruned(asha_run):
    r = mpitune.load(asha_run[0])
    pruned = np.flatnonzero(r["state"] == "pruned")
    odd = pruned[pruned % 2 == 1]
    even = pruned[pruned % 2 == 0]
    assert len(odd) and len(even)
    assert np.allclose(r["value"][odd], r["x"][odd]) and (r["caught"][odd] == 1).all()
    assert np.isnan(r["value"][even]).all()


def test_e2e_non_finite_reports_do_not_crash_and_count_as_worst(asha_run):
    path, res = asha_run
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    r = mpitune.load(path)
    diverged = np.arange(len(r))[np.arange(len(r)) % 5 == 2]
    values = np.concatenate([r.curve(n)[1] for n in diverged])
    assert np.isnan(values).any()
    assert (r["state"][diverged] == "pruned").sum() >= len(diverged) - 1


RESUME_SPEC = '''
import time
from mpitune import Real

space = {"x": Real(0.0, 1.0)}


def objective(params, trial):
    for step in range(1, 13):  # later trials are worse at every step
        time.sleep(0.005)
        trial.report(step, trial.number + 1.0 / step)
    return trial.number
'''


def test_e2e_resume_rebuilds_asha_rungs(tmp_path):
    spec = write_spec(tmp_path, RESUME_SPEC)
    args = [spec, "--pruner", "asha", "--storage", "r.h5", "--progress-interval", "0"]
    res = run_mpi(4, args + ["--max-trials", "20"], cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.describe()
    first = mpitune.load(str(tmp_path / "r.h5"))
    assert (first["state"] == "complete").sum() >= 1
    res = run_mpi(4, args + ["--max-trials", "40"], cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.describe()
    r = mpitune.load(str(tmp_path / "r.h5"))
    assert len(r) == 40 and (r["state"][:20] == first["state"]).all()
    # every new trial is worse at step 1 than the 20 stored ones: with the rungs rebuilt
    # it is stopped at the first rung; with empty rungs the first would have gone on
    assert (r["state"][20:] == "pruned").all(), r["state"][20:]
    for n in range(20, 40):
        steps = r.curve(n)[0]
        assert steps[0] == 1 and steps[-1] < 12


def test_e2e_hyperband_maximize_and_serial_median(tmp_path):
    spec = write_spec(tmp_path, SPEC.replace("x + 1.0 / step", "x - 1.0 / step")
                      .replace("trial.number % 5 == 2", "False"))
    res = run_mpi(4, [spec, "--pruner", "hyperband", "--max-resource", "27",
                      "--direction", "maximize", "--max-trials", "50", "--storage", "h.h5",
                      "--progress-interval", "0", "--sampler", "sobol"], cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.describe()
    r, decided = decisions(str(tmp_path / "h.h5"), HyperbandPruner(1, 3, 27))
    pruned = set(np.flatnonzero(r["state"] == "pruned").tolist())
    assert pruned and pruned <= set(decided)
    # maximising: the best trial by x is never stopped
    assert r["state"][int(np.argmax(r["x"]))] == "complete"
    # serially (no mpiexec) the inline worker's points reach the pruner at once
    res = run_mpi(None, [spec, "--pruner", "median", "--max-trials", "30", "--direction",
                         "maximize", "--storage", "s.h5", "--progress-interval", "0",
                         "--sampler", "sobol"],
                  cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.describe()
    s = mpitune.load(str(tmp_path / "s.h5"))
    assert (s["state"] == "pruned").sum() >= 5
    assert s["state"][int(np.argmax(s["x"]))] == "complete"


def test_cli_rejects_a_bad_pruner(tmp_path):
    spec = write_spec(tmp_path, RESUME_SPEC)
    res = run_mpi(None, [spec, "--pruner", "hyperband", "--storage", "b.h5"],
                  cwd=tmp_path, timeout=30)
    assert res.returncode == 2
    assert "setting 'max_resource' is None, but pruner 'hyperband' needs it" in res.stderr
    assert not (tmp_path / "b.h5").exists()


def test_states_are_finished_codes():
    assert PRUNED in FINISHED and COMPLETE in FINISHED
