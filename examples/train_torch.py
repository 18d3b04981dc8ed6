r"""Tune a small PyTorch network on the digits data set, on each worker's own GPU.

    pip install ".[mpich,sklearn]" torch                          # once, in your venv
    mpiexec -n 3 python -m mpitune examples/train_torch.py        # 1 master + 2 workers
    python -m mpitune show torch_digits.h5                        # the best trials
    mpiexec -n 3 python -m mpitune examples/train_torch.py --pruner median --warmup-steps 3 \
        --storage pruned.h5                                       # stop poor trials early

On a GPU node start one worker per GPU plus the master (``-n GPUS+1``, or see
``jobscripts/slurm_gpu.sbatch``): mpitune narrows ``CUDA_VISIBLE_DEVICES`` to one GPU per
worker before this file is imported, so ``trial.device`` is ``"cuda:0"`` on every worker
(each sees only its own GPU) and ``"cpu"`` where there is none. The data (scikit-learn's
8x8 digits, 1,797 images) ships with scikit-learn: nothing is downloaded.

Module-level names equal to a setting (``max_trials``, ``storage``, ``seed``,
``batch_size``, ...) are settings; our own constants are in UPPER CASE to stay clear of
them.
"""

import functools
import os

# One CPU thread per worker when trials run on the CPU: several workers share a node's
# cores. torch reads this when it is imported, which on a worker happens right here.
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch
    from torch import nn
except ImportError:
    raise ImportError(
        "examples/train_torch.py needs PyTorch: pip install torch (on a GPU cluster, "
        "the build for the node's CUDA version, see pytorch.org)") from None

from mpitune import Categorical, Integer, Real, TrialPruned  # noqa: E402

space = {
    "lr": Real(1e-4, 3e-2, log=True),
    "hidden": Integer(16, 256, log=True),
    "layers": Integer(1, 3),
    "dropout": Real(0.0, 0.5),
    "activation": Categorical(["relu", "gelu", "tanh"]),
    "optimizer": Categorical(["adam", "sgd"]),
    "minibatch": Categorical([32, 64, 128]),
    "epochs": 12,  # a constant
}

max_trials = 24
storage = "torch_digits.h5"
progress_interval = 5.0

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@functools.lru_cache(maxsize=1)
def digits():
    """(x_train, y_train, x_val, y_val) as CPU tensors, loaded once per worker."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25,
                                                      stratify=y, random_state=0)
    return (torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train),
            torch.tensor(x_val, dtype=torch.float32), torch.tensor(y_val))


def build(params, n_in=64, n_out=10):
    layers, width = [], n_in
    for _ in range(params["layers"]):
        layers += [nn.Linear(width, params["hidden"]), ACTIVATIONS[params["activation"]](),
                   nn.Dropout(params["dropout"])]
        width = params["hidden"]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def objective(params, trial):
    torch.manual_seed(trial.number)  # reproducible: one seed per trial
    device = torch.device(trial.device)  # "cuda:0" (this worker's own GPU) or "cpu"
    x_train, y_train, x_val, y_val = (t.to(device) for t in digits())
    model = build(params).to(device)
    if params["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=params["lr"] * 10, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n = len(x_train)
    for epoch in range(1, params["epochs"] + 1):
        model.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n, params["minibatch"]):
            batch = order[start:start + params["minibatch"]]
            opt.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
        if val_loss != val_loss:  # NaN: the run diverged
            raise TrialPruned(f"diverged at epoch {epoch}")
        trial.report(epoch, val_loss)  # one learning-curve point, sent in the background
    return {"value": val_loss, "accuracy": accuracy}
