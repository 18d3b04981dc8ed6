"""Unit tests of mpitune.space: the map between the unit cube and user values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mpitune.errors import SpecError
from mpitune.space import RESERVED_NAMES, Categorical, Constant, Integer, Real, Space, tidy

ONE_MINUS = np.nextafter(1.0, 0.0)


def grid(n: int) -> np.ndarray:
    """``n`` evenly spread cell centres of [0, 1) plus both extreme unit values."""
    return np.concatenate([[0.0, ONE_MINUS], (np.arange(n) + 0.5) / n])


def column(dim, u) -> np.ndarray:
    """Map a 1-d unit array through one dimension inside a one-dimension space."""
    space = Space({"p": dim})
    return space.columns(np.asarray(u, dtype=float).reshape(-1, 1))[0]


# ---- Real ----------------------------------------------------------------------------


@pytest.mark.parametrize("low, high", [(-5.0, 10.0), (0.0, 1.0), (-1e-9, 1e-9), (3, 7),
                                       (-1e6, -1e3)])
def test_real_linear_within_bounds_and_endpoints(low, high):
    values = column(Real(low, high), grid(1000))
    assert values.dtype == np.float64
    assert values.min() >= low and values.max() <= high
    assert column(Real(low, high), [0.0])[0] == low
    top = column(Real(low, high), [ONE_MINUS])[0]
    assert top <= high and math.isclose(top, high, rel_tol=1e-12, abs_tol=1e-12 * abs(high - low))
    middle = column(Real(low, high), [0.5])[0]
    assert math.isclose(middle, (low + high) / 2, rel_tol=1e-12, abs_tol=1e-15)


def test_real_linear_is_uniform():
    values = column(Real(10.0, 20.0), grid(10_000)[2:])
    counts, _ = np.histogram(values, bins=10, range=(10.0, 20.0))
    assert counts.min() >= 990 and counts.max() <= 1010


@pytest.mark.parametrize("low, high", [(1e-3, 1.0), (0.5, 2.0), (1.0, 1e6), (3e-4, 0.3)])
def test_real_log_within_bounds_and_log_uniform(low, high):
    u = grid(1000)[2:]  # interior points; the endpoints have their own tests
    values = column(Real(low, high, log=True), u)
    assert values.min() >= low and values.max() <= high
    # log-uniform: log(value) is linear in u
    expected = np.log(low) + u * (np.log(high) - np.log(low))
    np.testing.assert_allclose(np.log(values), expected, rtol=1e-12, atol=1e-12)
    top = column(Real(low, high, log=True), [ONE_MINUS])[0]
    assert top <= high and math.isclose(top, high, rel_tol=1e-9)


@pytest.mark.parametrize("low, high", [(1e-5, 1e-1), (1e-5, 1e3), (1e-8, 1.0)])
def test_bug_real_log_lower_endpoint_not_below_low(low, high):
    """BUG (space.py, Real.to_user): only the upper end is clamped (np.minimum(..., high)),
    and exp(log(low)) rounds below ``low`` for e.g. low=1e-5 (the quickstart's lr), so the
    unit value 0 (the first point of an unscrambled Sobol sequence) gives a value outside
    the declared bounds."""
    value = column(Real(low, high, log=True), [0.0])[0]
    assert low <= value <= high, f"Real({low}, {high}, log=True) gave {value!r} for u=0"


# ---- Integer -------------------------------------------------------------------------


@pytest.mark.parametrize("low, high, step, expected", [
    (1, 8, 1, list(range(1, 9))),
    (0, 10, 3, [0, 3, 6, 9]),
    (-5, 5, 5, [-5, 0, 5]),
    (2, 3, 1, [2, 3]),
    (-10, 20, 7, [-10, -3, 4, 11, 18]),
])
def test_integer_linear_covers_every_value_uniformly(low, high, step, expected):
    dim = Integer(low, high, step=step)
    assert dim.size == len(expected)
    values = column(dim, grid(200 * len(expected)))
    assert values.dtype.kind == "i"
    assert sorted(set(values.tolist())) == expected
    # cell centres -> exactly uniform; the two extra endpoint values are the extremes
    counts = {v: int((values == v).sum()) for v in expected}
    assert counts[expected[0]] == 201 and counts[expected[-1]] == 201
    assert all(counts[v] == 200 for v in expected[1:-1])


def test_integer_linear_random_is_roughly_uniform():
    rng = np.random.default_rng(0)
    values = column(Integer(0, 9), rng.random(100_000))
    counts = np.bincount(values, minlength=10)
    assert len(counts) == 10
    assert counts.min() > 9_400 and counts.max() < 10_600


@pytest.mark.parametrize("low, high", [(1, 100), (1, 2), (3, 17), (10, 1000), (11, 20)])
def test_integer_log_covers_every_value_and_only_those(low, high):
    values = column(Integer(low, high, log=True), grid(200_000))
    assert values.min() == low and values.max() == high
    assert sorted(set(values.tolist())) == list(range(low, high + 1))
    # log-uniform: small values are more frequent than large ones
    counts = np.bincount(values - low)
    assert counts[0] >= counts[-1]


def test_integer_log_frequencies_follow_log_cells():
    dim = Integer(1, 64, log=True)
    values = column(dim, grid(640_000)[2:])
    counts = np.bincount(values, minlength=65)[1:]
    lo, hi = math.log(0.5), math.log(64.5)
    expected = [(math.log(v + 0.5) - math.log(max(v - 0.5, 0.5))) / (hi - lo) * 640_000
                for v in range(1, 65)]
    np.testing.assert_allclose(counts, expected, rtol=0.01, atol=2)


# ---- Categorical ---------------------------------------------------------------------


MIXED = [1, "a", None, [1, 2], {"k": [1, {"z": None}]}, 2.5, True, "1"]


def test_categorical_returns_the_choice_objects_uniformly():
    values = column(Categorical(MIXED), grid(100 * len(MIXED))[2:])
    assert values.shape == (100 * len(MIXED),)
    for i, choice in enumerate(MIXED):
        block = values[100 * i: 100 * (i + 1)].tolist()
        assert all(type(v) is type(choice) and v == choice for v in block), (i, choice)


@pytest.mark.parametrize("choices", [[[1, 2], [3, 4]], [[1, 2], [3, 4], [5, 6]], [[]],
                                     [{"a": 1}], [(1, 2), (3, 4)], ["x"]])
def test_categorical_list_like_choices_are_not_broadcast(choices):
    values = column(Categorical(choices), grid(10 * len(choices))[2:]).tolist()
    expected = [list(c) if isinstance(c, tuple) else c for c in choices]
    assert [v if not isinstance(v, tuple) else list(v) for v in values[::10]] == expected


def test_categorical_endpoints():
    assert column(Categorical(["a", "b", "c"]), [0.0, ONE_MINUS, 1.0]).tolist() == \
        ["a", "c", "c"]



def test_categorical_snap_is_the_round_trip_through_the_choices():
    """``snap`` works on indices alone (fast for thousands of choices) and gives what the
    round trip unit -> choice -> unit gives, for choices of every JSON type."""
    dim = Space({"c": Categorical(MIXED + [1.5, False, [1], {"k": [2]}, "2"])}).dims[0]
    u = np.concatenate([grid(3 * dim.size), np.random.default_rng(0).random(500), [1.0]])
    round_trip = dim.to_unit(dim.to_user(np.clip(u, 0.0, 1.0)))
    np.testing.assert_array_equal(dim.snap(u), round_trip)
    np.testing.assert_array_equal(np.isnan(dim.snap([np.nan, 0.2])), [True, False])

# ---- Space: rows, round trip ---------------------------------------------------------


@pytest.fixture
def space() -> Space:
    return Space({
        "x": Real(-5.0, 10.0),
        "lr": Real(1e-4, 1e-1, log=True),
        "layers": Integer(1, 8),
        "width": Integer(16, 512, log=True),
        "batch": Integer(8, 64, step=8),
        "act": Categorical(["relu", "tanh", "gelu"]),
        "mixed": Categorical(MIXED),
        "flag": Categorical([True, False]),
        "epochs": 5,
        "name": Constant("run"),
    })


def test_space_dimensions_and_constants(space):
    assert space.names == ["x", "lr", "layers", "width", "batch", "act", "mixed", "flag"]
    assert space.ndim == 8
    assert space.constants == {"epochs": 5, "name": "run"}


def test_rows_give_plain_python_types(space):
    unit = np.random.default_rng(1).random((200, space.ndim))
    rows = space.rows(unit)
    assert len(rows) == 200
    for row in rows:
        assert len(row) == space.ndim
        x, lr, layers, width, batch, act, mixed, flag = row
        assert type(x) is float and -5.0 <= x <= 10.0
        assert type(lr) is float and 1e-4 <= lr <= 1e-1
        assert type(layers) is int and 1 <= layers <= 8
        assert type(width) is int and 16 <= width <= 512
        assert type(batch) is int and batch in range(8, 65, 8)
        assert type(act) is str and act in ("relu", "tanh", "gelu")
        assert any(type(mixed) is type(c) and mixed == c for c in MIXED)
        assert type(flag) is bool
    # the rows must survive a JSON round trip unchanged (they travel in messages/files)
    assert json.loads(json.dumps(rows)) == [list(r) for r in rows]


def test_rows_of_space_without_dimensions():
    s = Space({"a": 1, "b": Constant([1, 2])})
    assert s.ndim == 0 and s.names == []
    assert s.rows(np.empty((3, 0))) == [(), (), ()]


def test_to_unit_of_to_user_lands_in_the_same_cell(space):
    unit = np.random.default_rng(2).random((500, space.ndim))
    unit[0] = 0.0
    unit[1] = ONE_MINUS
    rows = space.rows(unit)
    params = [dict(zip(space.names, r)) for r in rows]
    back = space.to_unit(params)
    assert back.shape == unit.shape
    assert np.all((back >= 0.0) & (back <= 1.0))
    assert space.rows(back) == rows
    # reals land (almost) on the same point
    np.testing.assert_allclose(back[:, 0], unit[:, 0], atol=1e-12)
    np.testing.assert_allclose(back[:, 1], unit[:, 1], atol=1e-9)
    # cell centres for discrete dimensions: mapping twice is a fixed point
    np.testing.assert_allclose(space.to_unit([dict(zip(space.names, r))
                                              for r in space.rows(back)]), back)


def test_to_unit_missing_parameter_names_it(space):
    params = dict(zip(space.names, space.rows(np.full((1, space.ndim), 0.5))[0]))
    del params["width"]
    with pytest.raises(SpecError, match="width"):
        space.to_unit([params])


# ---- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("dim, fragment", [
    (Real(1.0, 1.0), "low must be < high"),
    (Real(2.0, 1.0), "low must be < high"),
    (Real(0.0, 1.0, log=True), "log"),
    (Real(-1.0, 1.0, log=True), "log"),
    (Real(0.0, math.inf), "finite"),
    (Real(math.nan, 1.0), ""),
    (Real("0", 1.0), "number"),
    (Real(True, 2.0), "number"),
    (Real(0.0, 1.0, log="yes"), "log"),
    (Integer(5, 5), "low must be < high"),
    (Integer(5, 1), "low must be < high"),
    (Integer(0, 10, log=True), "log"),
    (Integer(1, 10, step=2, log=True), "step"),
    (Integer(0, 10, step=0), "step"),
    (Integer(0, 10, step=-1), "step"),
    (Integer(0.0, 10), "int"),
    (Integer(0, 10.5), "int"),
    (Integer(0, 10, step=1.5), "int"),
    (Integer(False, 10), "int"),
    (Categorical([]), "at least one"),
    (Categorical(["a", "b", "a"]), "distinct"),
    (Categorical([{"a": 1, "b": 2}, {"b": 2, "a": 1}]), "distinct"),
    (Categorical([1, object()]), "JSON"),
    (Categorical([1.0, math.nan]), "JSON"),
    (Categorical("abc"), "list"),
    (Categorical({"a", "b"}), "list"),
])
def test_invalid_dimension_raises_spec_error_naming_the_parameter(dim, fragment):
    with pytest.raises(SpecError) as info:
        Space({"ok": Real(0, 1), "bad_param": dim})
    message = str(info.value)
    assert "bad_param" in message
    assert fragment in message


@pytest.mark.parametrize("cls", [Real, Integer, Categorical, Constant])
def test_class_instead_of_instance_names_the_parameter(cls):
    with pytest.raises(SpecError, match=rf"'my_param'.*{cls.__name__}\(\.\.\.\)"):
        Space({"my_param": cls})


@pytest.mark.parametrize("value", [object(), {1, 2}, lambda: 1, math.nan, b"bytes"])
def test_unknown_object_names_the_parameter(value):
    with pytest.raises(SpecError, match="'strange'"):
        Space({"strange": value})


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_names_are_refused(name):
    for dim in (Real(0, 1), 3):
        with pytest.raises(SpecError, match=f"'{name}'.*reserved"):
            Space({name: dim})


@pytest.mark.parametrize("name", ["", "1x", "a-b", "a b", 3])
def test_non_identifier_names_are_refused(name):
    with pytest.raises(SpecError, match="identifier"):
        Space({name: Real(0, 1)})


@pytest.mark.parametrize("definition", [{}, [], None, "x"])
def test_empty_or_non_dict_space(definition):
    with pytest.raises(SpecError, match="non-empty dict"):
        Space(definition)


def test_bug_shared_dimension_object_keeps_both_names():
    """BUG (space.py, Space.__init__: ``dim.name = name``): the Dimension object itself is
    renamed, so one object used for two parameters (``r = Real(0, 1); {"x": r, "y": r}``)
    gives ``names == ["y", "y"]`` and the objective never receives ``x``. Fix: store a copy
    (``dim = copy.copy(dim)``) before setting its name."""
    r = Real(0.0, 1.0)
    s = Space({"x": r, "y": r})
    assert s.names == ["x", "y"]
    assert [d["name"] for d in json.loads(s.to_json())["dimensions"]] == ["x", "y"]


def test_bug_building_a_second_space_does_not_rename_the_first():
    """BUG (space.py, Space.__init__: ``dim.name = name``): reusing a Dimension object in a
    second Space renames it inside the first one too, so the first space's to_json (stored
    in the results file) silently changes. Fix: copy the dimension before naming it."""
    r = Integer(1, 8)
    first = Space({"layers": r})
    before = first.to_json()
    Space({"depth": r})
    assert first.to_json() == before


# ---- JSON and diff -------------------------------------------------------------------


def test_to_json_from_json_round_trip_keeps_order_and_values(space):
    text = space.to_json()
    again = Space.from_json(text)
    assert again.names == space.names
    assert again.constants == space.constants
    assert again.to_json() == text
    assert space.diff(again) == ""
    assert [type(d) for d in again.dims] == [type(d) for d in space.dims]
    unit = np.random.default_rng(3).random((50, space.ndim))
    assert again.rows(unit) == space.rows(unit)


def test_to_json_is_canonical():
    a = Space({"x": Real(1, 10), "n": Integer(1, 4)})
    b = Space({"x": Real(1.0, 10.0), "n": Integer(1, 4, step=1)})
    assert a.to_json() == b.to_json()


def test_space_from_space_copies_definition(space):
    again = Space(space)
    assert again.to_json() == space.to_json()


def test_diff_names_added_removed_and_changed():
    old = Space({"x": Real(0, 1), "n": Integer(1, 4), "c": Categorical(["a", "b"]),
                 "k": 1})
    new = Space({"x": Real(0, 2), "c": Categorical(["a", "b"]), "m": Integer(1, 4),
                 "k": 2})
    text = old.diff(new)
    assert "'n' was removed" in text
    assert "'m' was added" in text
    assert "'x' changed" in text
    assert "'k' changed" in text
    assert "'c'" not in text
    assert new.diff(old) != "" and "'m' was removed" in new.diff(old)


def test_diff_detects_order_change_and_log_flag():
    a = Space({"x": Real(1, 2), "y": Real(1, 2)})
    b = Space({"y": Real(1, 2), "x": Real(1, 2)})
    assert "order" in a.diff(b)
    c = Space({"x": Real(1, 2, log=True), "y": Real(1, 2)})
    assert "'x' changed" in a.diff(c)
    assert a.diff(Space({"x": Real(1, 2), "y": Real(1, 2)})) == ""


def test_diff_constant_becoming_dimension():
    a = Space({"x": Real(0, 1), "e": 5})
    b = Space({"x": Real(0, 1), "e": Integer(1, 5)})
    text = a.diff(b)
    assert "'e'" in text and text != ""


# ---- what the results file can store: refused when the space is built ----------------


def stored_params(space: Space, unit) -> list[dict]:
    """Write trials with these unit rows to a real results file, load it, return params."""
    import tempfile

    from mpitune.results import load
    from mpitune.snapshot import Meta, write_snapshot
    from mpitune.table import COMPLETE, TrialTable

    unit = np.asarray(unit, dtype=float)
    n = len(unit)
    table = TrialTable(space.ndim)
    table.apply({"k": "A", "n0": 0, "u": unit.tolist()})
    table.apply({"k": "D", "n": list(range(n)), "s": [COMPLETE] * n, "v": [1.0] * n,
                 "t0": [0.0] * n, "t1": [1.0] * n, "m": {}, "e": {}})
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/r.h5"
        write_snapshot(path, Meta(space_json=space.to_json(), settings_json="{}", seed=1,
                                  direction="minimize"), table)
        r = load(path)
    return [r.params(i) for i in range(n)]


COND = {"p": Categorical(["on", "off"])}


@pytest.mark.parametrize("choices, when, words", [
    (["a", "\x00nul"], None, ["NUL", r"'\x00nul'"]),
    (["a", "b\x00"], None, ["NUL"]),
    (["a", "\ud800"], None, ["UTF-8", r"'\ud800'"]),
    ([10**30, 1], None, ["int64", "~1e+30"]),
    ([2**63, 1], None, ["int64", str(2**63)]),
    ([2**53 + 1, 0.5], None, ["float64", str(2**53 + 1)]),
    ([2**53 + 1, 3], {"p": "on"}, ["float64", "conditional"]),
    ([0, 0.0, 1], None, ["equal numbers", "0 and 0.0"]),
    ([1, 2.5, 1.0], None, ["equal numbers", "1 and 1.0"]),
    ([0.0, -0.0], None, ["equal numbers"]),
    ([{1: "a"}, {"b": 2}], None, ["dict keys as text", "{1: 'a'}"]),
    ([[{"k": {2: 0}}], "x"], None, ["dict keys as text"]),
])
def test_choice_the_results_file_cannot_store_is_refused(choices, when, words):
    with pytest.raises(SpecError) as info:
        Space({**COND, "bad_param": Categorical(choices, when=when)})
    message = str(info.value)
    assert "bad_param" in message and "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("choices", [
    [-2**63, 2**63 - 1],                     # int64 column: its whole range
    [2**60, 0.5],                            # float64 column: exact in float64
    ["é", "日本", "", "a b"],                 # UTF-8 text column
    [["a\x00", "\ud800"], {"k": 10**30}],    # JSON text column escapes what text cannot hold
    [True, 1, 0, False],                     # JSON text keeps bools and ints apart
    [0, 0.0, "a"],                           # ... and ints and floats
])
def test_accepted_choices_come_back_unchanged_from_the_results_file(choices):
    space = Space({"x": Categorical(choices)})
    unit = (np.arange(len(choices)) + 0.5).reshape(-1, 1) / len(choices)
    got = [p["x"] for p in stored_params(space, unit)]
    expected = [list(c) if isinstance(c, tuple) else c for c in choices]
    assert got == expected
    assert [type(g) for g in got] == [type(c) for c in expected] or \
        Categorical(choices).column_kind == "float"


def test_conditional_empty_string_choice_is_not_taken_for_inactive():
    """A conditional text column stores "" where the parameter is inactive; a trial that
    chose "" must still have it (the unit cube's NaN tells inactive)."""
    space = Space({"opt": Categorical(["sgd", "adam"]),
                   "tag": Categorical(["", "a"], when={"opt": "sgd"}),
                   "n": Integer(1, 3, when={"opt": "sgd"})})
    unit = space.mask([[0.25, 0.25, 0.5], [0.25, 0.75, 0.1], [0.75, 0.25, 0.5]])
    assert stored_params(space, unit) == [{"opt": "sgd", "tag": "", "n": 2},
                                          {"opt": "sgd", "tag": "a", "n": 1},
                                          {"opt": "adam"}]


@pytest.mark.parametrize("dim, words", [
    (Integer(0, 10**30), ["high", "2**51", "~1e+30"]),
    (Integer(-2**63, 2**63 - 1), ["low", "2**51"]),
    (Integer(-2**62, 2**62), ["low", "2**51"]),
    (Integer(0, 2**51 + 1), ["high", "2**51"]),
    (Integer(0, 10, step=2**52), ["step", "2**51"]),
    (Integer(1, 10**400, log=True), ["high", "~1e+400"]),
    (Integer(1, 2**45 + 1, log=True), ["log", "2**45"]),
    (Integer(0, 10**5000), ["high", "~1e+5000"]),
    (Real(0, 10**400), ["finite", "~1e+400"]),
    (Real(-1e308, 1e308), ["width", "overflows"]),
    (Real(0.0, 1.7e308, log=False), []),
])
def test_numeric_bounds_beyond_float64_are_refused(dim, words):
    if not words:  # the widest finite width is fine
        assert column(dim, [0.5])[0] == 0.85e308
        return
    with pytest.raises(SpecError) as info:
        Space({"bad_param": dim})
    message = str(info.value)
    assert "bad_param" in message and len(message) < 300
    for word in words:
        assert word in message, message


def test_a_stored_space_beyond_the_limits_still_loads():
    """Files written before a limit existed must stay readable: the limits apply to new
    spaces, not to the one a results file holds."""
    dims = {"n": Integer(0, 10**16), "c": Categorical([0, 0.0, 1]), "r": Real(-1e308, 1e308)}
    for name, dim in dims.items():
        with pytest.raises(SpecError, match=f"parameter '{name}'"):
            Space({name: dim})
    stored = json.dumps({"dimensions": [dict(d.to_json(), name=k) for k, d in dims.items()],
                         "constants": {}})
    assert Space.from_json(stored).names == ["n", "c", "r"]


@pytest.mark.parametrize("dim", [Integer(-2**51, 2**51), Integer(0, 2**51, step=3),
                                 Integer(1, 2**45, log=True),
                                 Integer(2**45 - 40, 2**45, log=True)])
def test_integers_at_the_limits_map_to_their_own_cell_and_back(dim):
    dim = Space({"x": dim}).dims[0]
    k = np.concatenate([np.arange(2000), dim.size - 1 - np.arange(2000),
                        np.random.default_rng(0).integers(0, dim.size, 20_000)])
    values = dim.low + k[(k >= 0) & (k < dim.size)] * dim.step
    np.testing.assert_array_equal(dim.to_user(dim.to_unit(values)), values)


def test_real_wide_but_finite_range_stays_in_bounds():
    values = column(Real(-1e300, 1e300), grid(100))
    assert np.isfinite(values).all() and values.min() == -1e300 and values.max() <= 1e300
    assert len(set(values.tolist())) == 102


@pytest.mark.parametrize("values", [{"a", "c"}, frozenset({"a", "c"}), ("c", "a"),
                                    ["a", "c", "a"]])
def test_when_accepts_a_set_tuple_or_list_of_choices(values):
    space = Space({"p": Categorical(["a", "b", "c"]), "x": Real(0, 1, when={"p": values})})
    assert space.dims[1].when == {"p": ["a", "c"]}
    assert json.loads(space.to_json())["dimensions"][1]["when"] == {"p": ["a", "c"]}
    active = space.active([[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]])[:, 1]
    assert active.tolist() == [True, False, True]


@pytest.mark.parametrize("values, words", [
    ([], ["lists no value", "[]"]), ((), ["lists no value"]), (set(), ["lists no value"]),
    ({"a", "z"}, ["'z' is not one of"]), ({1: 2, "b": 3}, ["is not one of"]),
])
def test_when_with_no_or_unknown_values_is_refused(values, words):
    with pytest.raises(SpecError) as info:
        Space({"p": Categorical(["a", "b"]), "bad_param": Real(0, 1, when={"p": values})})
    message = str(info.value)
    assert "bad_param" in message
    for word in words:
        assert word in message, message


def test_when_empty_list_is_a_value_when_it_is_a_choice():
    space = Space({"p": Categorical([[], [1]]), "x": Real(0, 1, when={"p": []})})
    assert space.dims[1].when == {"p": [[]]}


TYPED = [0.001, 0.01, 0.1, 0.3, 0.5, 1.0, 3e-4, 7.77e-6, 0.0123, 2.5, 1e-9, 0.999, 0.125]


@pytest.mark.parametrize("dim", [Real(1e-9, 1.0, log=True), Real(1e-10, 1e10, log=True),
                                 Real(0.0, 1.0), Real(-5.0, 10.0), Real(1e-9, 2.5)])
def test_typed_reals_come_back_as_written(dim):
    """Explicit configurations, grid points and bounds reach the objective exactly (not
    0.0010000000000000002 for 1e-3 on a log scale), also from the largest unit value the
    samplers propose (the top of the range, not 0.9999999999999999)."""
    dim = Space({"x": dim}).dims[0]
    values = np.array([v for v in TYPED + [dim.low, dim.high] if dim.low <= v <= dim.high])
    np.testing.assert_array_equal(dim.to_user(dim.to_unit(values)), values)
    assert dim.to_user(np.array([np.nextafter(1.0, 0.0)]))[0] == dim.high



@pytest.mark.parametrize("kind", [np.float16, np.float32, np.int32])
def test_numpy_typed_bounds_give_the_values_the_results_file_stores(kind):
    """Bounds typed as numpy numbers become plain Python numbers: computed from float16
    or float32 bounds, the values were rounded to that precision and differed from the
    ones the results file recomputes from its float64 copy of the space."""
    space = Space({"x": Real(kind(0), kind(1)), "y": Real(kind(1), kind(100), log=True),
                   "n": Integer(np.int16(0), np.int16(30), step=np.int8(3))})
    assert [type(v) for v in (space.dims[0].low, space.dims[1].high)] == [
        float if kind is not np.int32 else int] * 2
    assert {type(v) for v in (space.dims[2].low, space.dims[2].step)} == {int}
    stored = Space.from_json(space.to_json())
    unit = np.random.default_rng(5).random((200, space.ndim))
    assert space.params(unit) == stored.params(unit)
    assert all(type(p["x"]) is float for p in space.params(unit))


def test_tidy_moves_only_values_next_to_a_short_decimal():
    off = np.array([0.0010000000000000002, 0.9999999999999999, -2.5000000000000004,
                    1e-30 * 1.0000000000000002, 1e300 * 1.0000000000000002])
    tidied = np.array([1e-3, 1.0, -2.5, 1e-30, 1e300])
    kept = np.array([0.0, np.nan, np.inf, -np.inf, 5e-324, 1.7976931348623157e308,
                     123456.78901234567, np.pi])
    for copies in (1, 100):  # a few values go through Python, many through numpy
        np.testing.assert_array_equal(tidy(np.tile(off, copies)), np.tile(tidied, copies))
        np.testing.assert_array_equal(tidy(np.tile(kept, copies)), np.tile(kept, copies))
        np.testing.assert_array_equal(tidy(np.tile([7.76999999985e-06, 3e-16], copies),
                                           1e-13), np.tile([7.77e-06, 0.0], copies))
    u = np.random.default_rng(1).random(5000)
    values = np.concatenate([u, u * 1e-20, u * 1e30, -u, u * 1e-3 + 1e-17])
    for reach in (None, 1e-13):
        few = np.concatenate([tidy(values[i:i + 50], reach) for i in range(0, len(values), 50)])
        np.testing.assert_array_equal(few, tidy(values, reach))
    u = np.random.default_rng(0).random(100_000)
    dim = Space({"x": Real(1e-3, 1.0, log=True)}).dims[0]
    raw = np.exp(math.log(1e-3) + u * -math.log(1e-3))
    moved = dim.to_user(u) != raw
    assert moved.mean() < 0.02  # random draws are rarely tidied ...
    assert np.max(np.abs(dim.to_user(u) - raw) / raw) < 1e-13  # ... and then barely


def test_categorical_lookup_matches_json_text_then_one_equal_number():
    """A config's JSON ``1`` names the choice ``1.0`` and numpy's int64(2) the choice 2;
    a bool is never a number here, and two equal numbers are no match."""
    floats, ints = Categorical([0.5, 1.0, 2.0]), Categorical([1, 2, 4])
    assert floats.lookup(1) == 1 and floats.lookup(1.0) == 1 and floats.lookup(3) is None
    assert ints.lookup(np.int64(2)) == 1 and ints.lookup(4.0) == 2
    assert Categorical([0, 1]).lookup(True) is None
    assert Categorical([True, 1]).lookup(True) == 0 and Categorical([True, 1]).lookup(1) == 1
    assert Categorical(["1", 1.0]).lookup(1) == 1 and Categorical(["1", 1.0]).lookup("1") == 0
    np.testing.assert_array_equal(floats.to_unit([1, 2.0, np.float32(0.5)]),
                                  (np.array([1, 2, 0]) + 0.5) / 3)


def test_diff_tells_bools_ints_and_floats_apart():
    """On resume a space whose choices or constants changed type (True -> 1, 3 -> 3.0)
    would give the objective other values than the file records: it is a change."""
    before = Space({"flag": Categorical([False, True]), "k": Categorical([1, 2]), "e": 3})
    after = Space({"flag": Categorical([0, 1]), "k": Categorical([1.0, 2.0]), "e": 3.0})
    text = before.diff(after)
    assert "'flag' changed" in text and "'k' changed" in text and "'e' changed" in text
    assert before.diff(Space({"flag": Categorical([False, True]), "k": Categorical([1, 2]),
                              "e": 3})) == ""
    assert Space({"x": Real(0, 1)}).diff(Space({"x": Real(0.0, 1.0)})) == ""
