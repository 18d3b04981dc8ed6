"""Unit tests of mpitune.gpu (visible GPUs, round robin, binding) and mpitune.spec."""

from __future__ import annotations

import functools
import sys
import textwrap

import pytest

import mpitune.gpu as gpu
from mpitune.errors import SpecError
from mpitune.gpu import Binding, bind, choose_gpu, visible_gpus
from mpitune.settings import Settings
from mpitune.spec import check_objective, load_spec

# ---- gpu -----------------------------------------------------------------------------


@pytest.fixture
def driver_gpus(monkeypatch):
    """Pretend the NVIDIA driver lists ``count`` GPUs on this node."""

    def set_count(count: int | None):
        real = gpu.os.listdir

        def listdir(path="."):
            if str(path) == "/proc/driver/nvidia/gpus":
                if count is None:
                    raise FileNotFoundError(path)
                return [f"0000:{i:02x}:00.0" for i in range(count)]
            return real(path)

        monkeypatch.setattr(gpu.os, "listdir", listdir)

    return set_count


def test_visible_unset_uses_the_driver(driver_gpus):
    driver_gpus(3)
    assert visible_gpus({}) == ["0", "1", "2"]
    driver_gpus(None)
    assert visible_gpus({}) == []


@pytest.mark.parametrize("value, expected", [
    ("", []), ("-1", []), (" -1 ", []), ("NoDevFiles", []), ("none", []),
    ("0", ["0"]), ("0,1,2,3", ["0", "1", "2", "3"]), ("3, 1", ["3", "1"]),
    ("GPU-1a2b,GPU-3c4d", ["GPU-1a2b", "GPU-3c4d"]),
    ("MIG-aaaa", ["MIG-aaaa"]), ("0,1,", ["0", "1"]),
])
def test_visible_from_cuda_visible_devices(value, expected, driver_gpus):
    driver_gpus(8)  # never consulted when the variable is set
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": value}) == expected


def test_choose_gpu_round_robin():
    assert choose_gpu([], 0) is None and choose_gpu([], 5) is None
    four = ["0", "1", "2", "3"]
    assert [choose_gpu(four, i) for i in range(9)] == \
        ["0", "1", "2", "3", "0", "1", "2", "3", "0"]
    assert [choose_gpu(["GPU-a", "GPU-b"], i) for i in range(3)] == ["GPU-a", "GPU-b", "GPU-a"]
    assert [choose_gpu(["7"], i) for i in range(4)] == ["7"] * 4


def test_bind_narrows_the_given_environ(driver_gpus):
    driver_gpus(0)
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7", "OTHER": "x"}
    b = bind(2, environ=env)
    assert b == Binding("6", 2) and b.device == "cuda:0"
    assert env == {"CUDA_VISIBLE_DEVICES": "6", "OTHER": "x"}


def test_bind_respects_one_visible_device():
    for index in range(4):
        env = {"CUDA_VISIBLE_DEVICES": "GPU-only"}
        b = bind(index, environ=env)
        assert b.gpu == "GPU-only" and env["CUDA_VISIBLE_DEVICES"] == "GPU-only"
        assert "CUDA_DEVICE_ORDER" not in env


def test_bind_from_driver_sets_device_order(driver_gpus):
    driver_gpus(2)
    env = {}
    b = bind(3, environ=env)
    assert b.gpu == "1"
    assert env == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    env = {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}
    bind(0, environ=env)
    assert env["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


@pytest.mark.parametrize("value", ["", "-1"])
def test_bind_without_gpus_is_cpu_and_leaves_environ(value):
    env = {"CUDA_VISIBLE_DEVICES": value}
    b = bind(0, environ=env)
    assert b.gpu is None and b.device == "cpu" and b.local_index == 0
    assert env == {"CUDA_VISIBLE_DEVICES": value}


def test_bind_disabled_leaves_environ_alone(driver_gpus):
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    b = bind(1, enabled=False, environ=env)
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert b.local_index == 1
    driver_gpus(0)
    assert bind(0, enabled=False, environ={}).gpu is None


def test_bind_does_not_touch_os_environ_when_given_a_dict(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    bind(1, environ={"CUDA_VISIBLE_DEVICES": "5,6"})
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"


# ---- spec ----------------------------------------------------------------------------


@pytest.fixture
def write_spec(tmp_path):
    def write(body: str, name: str = "spec.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body))
        return str(path)

    yield write
    for name, module in list(sys.modules.items()):  # the specs, under whatever name
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


GOOD = textwrap.dedent("""\
    from mpitune import Real, Categorical

    space = {"x": Real(0, 1), "c": Categorical(["a", "b"]), "k": 2}
    max_trials = 12
    direction = "maximize"
    storage = "out.h5"
    seed = 3
    learning_rate = 0.1

    def objective(params, trial):
        return params["x"]
""")


def test_load_spec_picks_up_objective_space_and_settings(write_spec):
    path = write_spec(GOOD)
    spec = load_spec(path)
    assert spec.path == path
    assert spec.settings == {"max_trials": 12, "direction": "maximize", "storage": "out.h5",
                             "seed": 3}
    assert set(spec.space) == {"x", "c", "k"}
    assert spec.objective({"x": 0.25}, None) == 0.25
    assert spec.warnings == []
    Settings().replace(**spec.settings).validate()



@pytest.mark.parametrize("name, module", [("train_mlp.py", "train_mlp"), ("spec.py", "spec"),
                                          ("my-spec.py", "mpitune_spec"),
                                          ("time.py", "mpitune_spec"),
                                          ("numpy.py", "mpitune_spec"),
                                          ("mpitune.py", "mpitune_spec")])
def test_spec_is_imported_under_its_own_name_unless_that_shadows_a_module(write_spec, name,
                                                                          module):
    """Under its file's name, another process (multiprocessing with spawn or forkserver)
    can import it to unpickle the spec's functions; never under the name of a builtin or
    installed module, which the import would replace for the whole process."""
    path = write_spec(GOOD, name)
    objective = load_spec(path).objective
    assert objective.__module__ == module
    assert sys.modules[module].__file__ == path
    if module != "mpitune_spec":
        assert __import__(module) is sys.modules[module]
    assert getattr(sys.modules["time"], "__file__", None) != path
    assert sys.modules["numpy"].__file__ != path

def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(str(tmp_path / "nope.py"))
    with pytest.raises(SpecError, match="directory"):
        load_spec(str(tmp_path))


def test_syntax_error_names_the_line(write_spec):
    path = write_spec("space = {}\n\ndef objective(params, trial)\n    return 1\n")
    with pytest.raises(SpecError, match=r"line 3") as info:
        load_spec(path)
    assert path in str(info.value)


def test_exception_at_import_names_the_line(write_spec):
    path = write_spec("""\
        import math

        space = {}
        x = 1 / 0
    """)
    with pytest.raises(SpecError, match=r"line 4 failed to load: ZeroDivisionError"):
        load_spec(path)


def test_exception_in_a_function_called_at_import_names_the_spec_line(write_spec):
    path = write_spec("""\
        def helper():
            raise RuntimeError("no data")

        space = helper()
    """)
    with pytest.raises(SpecError, match=r"line 2 .*RuntimeError: no data"):
        load_spec(path)


def test_system_exit_at_import_is_a_spec_error(write_spec):
    path = write_spec("import sys\nsys.exit(4)\n")
    with pytest.raises(SpecError, match="SystemExit"):
        load_spec(path)


def test_bad_space_at_import_is_a_spec_error(write_spec):
    path = write_spec("""\
        from mpitune import Real
        from mpitune.space import Space

        space = Space({"lr": Real(0, 1, log=True)})
    """)
    with pytest.raises(SpecError, match="'lr'") as info:
        load_spec(path)
    assert path in str(info.value)


def test_no_objective(write_spec):
    path = write_spec("space = {'x': 1}\n")
    with pytest.raises(SpecError, match="no objective"):
        load_spec(path)


def test_no_space(write_spec):
    path = write_spec("def objective(params, trial):\n    return 1\n")
    with pytest.raises(SpecError, match="no space"):
        load_spec(path)


def test_objective_not_callable(write_spec):
    path = write_spec("space = {'x': 1}\nobjective = 3\n")
    with pytest.raises(SpecError, match="objective must be a function"):
        load_spec(path)


def test_one_argument_objective_is_accepted(write_spec):
    path = write_spec("space = {'x': 1}\ndef objective(params):\n    return params['x'] * 2\n")
    spec = load_spec(path)
    assert spec.objective({"x": 4}, object()) == 8


def test_three_argument_objective_is_refused():
    def objective(a, b, c):
        return 1

    with pytest.raises(SpecError, match="accept"):
        check_objective(objective, "here")


def test_check_objective_variants():
    def two(params, trial):
        return 2

    assert check_objective(two, "w") is two
    assert check_objective(lambda *a: 1, "w")({}, None) == 1
    assert check_objective(lambda p, t=None: 3, "w")({}, None) == 3

    class Callable:
        def __call__(self, params):
            return 5

    assert check_objective(Callable(), "w")({}, None) == 5
    assert check_objective(functools.partial(lambda k, p: k, 6), "w")({}, None) == 6


def test_bug_check_objective_wrong_arity_callable_without_name():
    """BUG (spec.py, check_objective): the error message uses ``objective.__name__``, which
    a callable object or a functools.partial lacks, so a wrong signature gives an
    AttributeError instead of the SpecError. Fix: ``getattr(objective, '__name__',
    type(objective).__name__)``."""

    def needs_three(a, b, c, d):
        return 1

    with pytest.raises(SpecError, match="accept"):
        check_objective(functools.partial(needs_three, 1), "here")


def test_near_miss_warning(write_spec):
    path = write_spec(GOOD + "\nbatchsize = 4\nmax_tirals = 5\n")
    spec = load_spec(path)
    assert any("'batchsize'" in w and "'batch_size'" in w for w in spec.warnings)
    assert any("'max_tirals'" in w and "'max_trials'" in w for w in spec.warnings)
    assert not any("learning_rate" in w for w in spec.warnings)
    assert "batchsize" not in spec.settings


def test_bug_near_miss_warning_for_max_trail(write_spec):
    """BUG (settings.py, near_misses: ``cutoff=0.85``): ``max_trail = 5`` in a spec gives
    no warning (ratio 0.842 to 'max_trials'), and the search silently runs the default 100
    trials. Fix: cutoff 0.8."""
    path = write_spec(GOOD.replace("max_trials = 12", "max_trail = 5"))
    spec = load_spec(path)
    assert "max_trials" not in spec.settings
    assert any("'max_trail'" in w and "'max_trials'" in w for w in spec.warnings)


def test_spec_directory_is_importable(write_spec):
    write_spec("VALUE = 41\n", name="helper_mod_for_spec_test.py")
    path = write_spec("""\
        import helper_mod_for_spec_test as h

        space = {"k": h.VALUE}

        def objective(params, trial):
            return params["k"] + 1
    """)
    try:
        spec = load_spec(path)
        assert spec.space == {"k": 41}
    finally:
        sys.modules.pop("helper_mod_for_spec_test", None)
