"""Tasks pinned to the driver's node: they read and write the run folder where the driver keeps it (it need not
be shared storage) while what they carry -- a model version -- stays in the object store, never in the driver's
own memory."""
from __future__ import annotations

from typing import Any, Callable


def on_driver_node(fn: Callable, *args: Any):
    """Run `fn(*args)` as a task on this driver's node (no CPU reserved: the pools may hold them all); returns its
    ObjectRef. ObjectRef arguments reach `fn` as their values."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    task = ray.remote(fn).options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
    return task.remote(*args)
