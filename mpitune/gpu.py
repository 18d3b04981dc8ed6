"""Bind each worker to one GPU of its node, before the user's spec imports a framework.

The node-local worker index comes from ``Split_type(COMM_TYPE_SHARED)``, which is right
under every launcher (under ``mpiexec`` inside a Slurm job, ``SLURM_LOCALID`` is 0 on every
rank). The candidate GPUs are ``CUDA_VISIBLE_DEVICES`` as the launcher or Slurm set it, or
every GPU the NVIDIA driver lists on the node. A launcher that already bound one GPU per
rank is respected; more workers than GPUs share them round-robin; no GPU means CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

_NO_GPU = ("", "-1", "NoDevFiles", "none")


@dataclass(frozen=True)
class Binding:
    gpu: Optional[str]  # the id as CUDA_VISIBLE_DEVICES names it (index, GPU-uuid, MIG-...)
    local_index: int  # this worker's index among the workers on its node

    @property
    def device(self) -> str:
        return "cuda:0" if self.gpu is not None else "cpu"


def visible_gpus(environ: Mapping[str, str]) -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES, else what the driver lists."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        if listed.strip() in _NO_GPU:
            return []
        visible = []
        for entry in (x.strip() for x in listed.split(",")):
            if not entry or entry.startswith("-"):
                break  # CUDA ignores everything from the first invalid entry on
            visible.append(entry)
        return visible
    try:
        count = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        count = 0
    return [str(i) for i in range(count)]


def choose_gpu(visible: list[str], local_index: int) -> Optional[str]:
    """One GPU for the worker with this node-local index (round-robin), or None."""
    if not visible:
        return None
    if len(visible) == 1:
        return visible[0]
    return visible[local_index % len(visible)]


def local_worker_index(comm, master: int = 0) -> int:
    """This rank's index among the worker ranks on its node (collective over ``comm``)."""
    from mpi4py import MPI

    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        ranks = node.allgather(comm.rank)
    finally:
        node.Free()
    workers = sorted(r for r in ranks if r != master)
    return workers.index(comm.rank) if comm.rank in workers else 0


def bind(local_index: int, enabled: bool = True,
         environ: Optional[os._Environ] = None) -> Binding:
    """Narrow CUDA_VISIBLE_DEVICES to one GPU for this worker and say what was bound."""
    environ = os.environ if environ is None else environ
    if not enabled:  # leave the environment alone; report what the worker can see
        return Binding(",".join(visible_gpus(environ)) or None, local_index)
    from_driver = "CUDA_VISIBLE_DEVICES" not in environ
    gpu = choose_gpu(visible_gpus(environ), local_index)
    if gpu is None:
        return Binding(None, local_index)
    environ["CUDA_VISIBLE_DEVICES"] = gpu
    if from_driver:
        environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # match the driver's numbering
    return Binding(gpu, local_index)
