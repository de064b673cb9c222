"""Where a run trains: a `tf.distribute` strategy, chosen by name, and what it was.

=============  ==================================================================================
strategy       trains on
=============  ==================================================================================
none           one device (TensorFlow's default strategy)
mirrored       every GPU of the machine (`tf.distribute.MirroredStrategy`), or, without GPUs, the
               logical CPU devices `$CATDOG_CPU_DEVICES` makes (see catdog.environment)
multiworker    several machines (or processes) together, each with its devices
               (`tf.distribute.MultiWorkerMirroredStrategy`, configured from `$TF_CONFIG`)
auto           mirrored when the machine has more than one GPU, else none
=============  ==================================================================================

The batch size is the global batch, split across the replicas; the learning rate is not
scaled, so the same global batch trains the same way on one device or several (Keras sums
the replicas' gradients of a loss divided by the replica count). Under several replicas the
training batches drop their remainder, since a replica left with an empty batch would give
batch normalisation NaN statistics, and XLA is off (it cannot compile across replicas).

Only the chief worker writes the run folder; the others write theirs into a temporary
folder that is removed when they finish.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from catdog import environment
from catdog.errors import ParameterError
from catdog.training.keras_patches import patch_keras_for_distribution

STRATEGIES = ("auto", "none", "mirrored", "multiworker")

logger = logging.getLogger(__name__)


@dataclass
class Placement:
    """The strategy a run trains under, and what it amounts to (recorded in config.json)."""

    strategy: str
    replicas: int
    workers: int
    devices: list[str]
    is_chief: bool = True
    tf_strategy: Any = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "replicas": self.replicas, "workers": self.workers, "devices": self.devices}


def place(name: str = "auto") -> Placement:
    """Create the strategy `name` (see the module docstring). Call it before anything else runs
    on TensorFlow: the multi-worker strategy must be set up first in the program."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ParameterError("strategy", f"unknown {{name}} {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(environment.gpus()) > 1 else "none"
    if name == "none":
        strategy = tf.distribute.get_strategy()
        device = "GPU:0" if environment.gpus() else "CPU:0"
        return Placement("none", 1, 1, [device], tf_strategy=strategy)
    patch_keras_for_distribution()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Placement("mirrored", strategy.num_replicas_in_sync, 1, _short(devices), tf_strategy=strategy)
    return _multiworker()


def _multiworker() -> Placement:
    import tensorflow as tf

    cluster = _cluster()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = sum(len(tasks) for tasks in cluster["cluster"].values())
    local = [d.name for d in tf.config.list_logical_devices("GPU")] or ["/device:CPU:0"]
    return Placement("multiworker", strategy.num_replicas_in_sync, workers, _short(local), is_chief(), strategy)


def _cluster() -> dict[str, Any]:
    """`$TF_CONFIG`, checked: the cluster, and this worker's place in it."""
    text = environment.cluster_config()
    if not text:
        raise ParameterError("strategy", "{name} multiworker needs $TF_CONFIG, the cluster and this worker's place "
                                         "in it (see tf.distribute.MultiWorkerMirroredStrategy)")
    try:
        values = json.loads(text)
        if not isinstance(values["cluster"], dict):
            raise TypeError
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ParameterError("strategy", "{name} multiworker: $TF_CONFIG is not JSON with a \"cluster\"") from e
    return values


def is_chief(strategy: str = "multiworker") -> bool:
    """Whether this process writes the run: always, but under `multiworker`, where only the
    chief does (a "chief" task, else worker 0), as TensorFlow's cluster resolver reads `$TF_CONFIG`."""
    if strategy != "multiworker":
        return True
    values = _cluster()
    task = values.get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    return kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in values["cluster"])


def _short(devices: list[str]) -> list[str]:
    """"/job:localhost/replica:0/task:0/device:CPU:1" -> "CPU:1"."""
    return [name.rsplit("device:", 1)[-1] for name in devices]
