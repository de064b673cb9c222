"""What catdog runs on: the TensorFlow installed, and the devices it trains on.

- `check_tensorflow` refuses, in one line, an environment without TensorFlow or with both of
  its distributions (`tensorflow-cpu` and `tensorflow`, which overwrite each other's files):
  catdog's extras `cpu` and `cuda` each install one (see pyproject.toml).
- `CATDOG_CPU_DEVICES=N` splits the CPU into N logical devices, so that a machine without
  GPUs can train on N replicas (`--strategy mirrored`), as the tests do. It must be applied
  before TensorFlow sets up its devices: the CLI does so at start-up (`configure_devices`).
- `gpus` and `gpu_compute_capability` describe the GPUs TensorFlow sees.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata

from catdog.errors import CatdogError

ENV_CPU_DEVICES = "CATDOG_CPU_DEVICES"
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")

logger = logging.getLogger(__name__)


def installed_tensorflow() -> list[str]:
    """The TensorFlow distributions installed (normally exactly one)."""
    found = []
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check_tensorflow() -> None:
    """Raise `CatdogError` unless exactly one TensorFlow distribution is installed."""
    found = installed_tensorflow()
    if not found:
        raise CatdogError("catdog needs TensorFlow: install it with pip install 'catdog[cpu]', "
                          "or 'catdog[cuda]' on a Linux machine with NVIDIA GPUs")
    if len(found) > 1:
        raise CatdogError("both tensorflow and tensorflow-cpu are installed, and they overwrite each other's files: "
                          "run pip uninstall -y tensorflow tensorflow-cpu, then pip install 'catdog[cpu]' "
                          "(or 'catdog[cuda]')")


def cpu_devices_requested() -> int:
    """The number of logical CPU devices `$CATDOG_CPU_DEVICES` asks for (1: none asked)."""
    text = os.environ.get(ENV_CPU_DEVICES, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise CatdogError(f"${ENV_CPU_DEVICES} must be a whole number of devices, at least 1; got {text!r}")
    return int(text)


def configure_devices() -> None:
    """Split the CPU into `$CATDOG_CPU_DEVICES` logical devices. Call before TensorFlow runs
    anything; once it has set up its devices, the split cannot change (a warning says so)."""
    import tensorflow as tf

    wanted = cpu_devices_requested()
    if wanted == 1:
        return
    (cpu, *_) = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * wanted)
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != wanted:
            logger.warning(f"${ENV_CPU_DEVICES}={wanted} came too late: TensorFlow had already set up {have} "
                           "CPU device(s); set it before catdog starts")


def gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def gpu_compute_capability() -> tuple[int, int] | None:
    """The lowest compute capability of the GPUs (all must support a precision), None without GPUs."""
    import tensorflow as tf

    found = gpus()
    if not found:
        return None
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
                    for gpu in found]
    return min(tuple(c) for c in capabilities)
