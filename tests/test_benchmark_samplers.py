"""Fast checks of benchmarks/samplers.py: the test functions' documented minima, the batched
FIFO schedule, and a tiny run of the core function (random and Sobol; a peer only when it is
installed)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("samplers")
problems = bench._problems


@pytest.mark.parametrize("name", sorted(problems.problems()))
def test_documented_minimum(name):
    p = problems.get(name)
    assert abs(p(p.argmin) - p.fmin) < 1e-4
    # a few random points of the space are never below the minimum
    from mpitune.space import Space

    space = Space(p.space)
    unit = np.random.default_rng(0).random((200, space.ndim))
    values = [p(dict(zip(space.names, row))) for row in space.rows(unit)]
    assert min(values) >= p.fmin - 1e-12


def test_mixed_minimum_depends_on_the_optimizer():
    f = problems.mixed
    best = {"lr": 1e-3, "layers": 6, "units": 96, "dropout": 0.15}
    assert f({**best, "optimizer": "adam"}) == 0.0
    # sgd is best at a larger learning rate, with its own floor 0.3
    sgd = {**best, "optimizer": "sgd", "lr": 10 ** -1.5}
    assert math.isclose(f(sgd), 0.3)
    assert f({**best, "optimizer": "sgd"}) > f(sgd)


class Recorder:
    """A fake method: counts what is pending at each ask and the tell order."""

    def __init__(self, space_names):
        self.names = space_names
        self.n = 0
        self.outstanding = 0
        self.asks: list = []
        self.told: list = []

    def ask(self, k):
        self.asks.append((k, self.outstanding))
        out = []
        for _ in range(k):
            out.append((self.n, {name: 0.5 for name in self.names}))
            self.n += 1
        self.outstanding += k
        return out

    def tell(self, token, value):
        self.told.append(token)
        self.outstanding -= 1


def test_schedule_keeps_q_pending_fifo():
    p = problems.get("hartmann3")
    rec = Recorder(list(p.space))
    out = bench.schedule(rec, p, evals=20, pending=4)
    assert len(out["values"]) == 20
    assert rec.asks[0] == (4, 0)  # one batch of q first
    assert all(a == (1, 3) for a in rec.asks[1:])  # then one per result, q-1 still pending
    assert len(rec.asks) == 1 + 16  # suggestions stop at the budget
    assert rec.told == list(range(20))  # oldest first


def test_core_random_sobol():
    results = bench.run_benchmark(["random", "sobol"], ["branin", "mixed"], seeds=2, evals=12,
                                  pending=3, sequential=["random"])
    assert len(results) == 2 * 2 * 2 + 2 * 2
    for r in results:
        assert "error" not in r, r
        assert r["regret"] >= 0.0
        assert r["trace"][-1] == r["regret"] and len(r["trace"]) == 12
        assert np.all(np.diff(r["trace"]) <= 0)
        assert r["sampler_seconds"] >= 0.0
    summary = bench.summarise(results)
    assert set(summary) == {(m, q, p) for m, q in (("random", 3), ("sobol", 3), ("random", 1))
                            for p in ("branin", "mixed")}
    rows = bench.target_rows(summary, ["random", "sobol"], ["branin", "mixed"], 3, ["random"])
    assert [r[0] for r in rows] == ["branin", "mixed"]
    # identical seeds give identical runs
    again = bench.run_task({"method": "sobol", "problem": "mixed", "seed": 1, "evals": 12,
                            "pending": 3})
    first = next(r for r in results if (r["method"], r["problem"], r["seed"], r["pending"])
                 == ("sobol", "mixed", 1, 3))
    assert again["trace"] == first["trace"]


@pytest.mark.parametrize("method,module", [("optuna-tpe", "optuna"),
                                           ("hyperopt-tpe", "hyperopt")])
def test_peer_runs(method, module):
    pytest.importorskip(module)
    r = bench.run_task({"method": method, "problem": "mixed", "seed": 0, "evals": 12,
                        "pending": 3})
    assert "error" not in r, r
    assert r["regret"] >= 0.0
