"""What catdog runs on: the environment variables it reads, the TensorFlow installed, and the devices.

This is the one module that reads environment variables; everything else asks it.

==========================  ================================================================
variable                    what it sets
==========================  ================================================================
``CATDOG_DATA``             the data folder when no ``--data`` is given
``CATDOG_WEIGHTS``          a local copy of MobileNetV2's ImageNet weights (no top), used for
                            the ``mobilenet_v2`` backbone only
``CATDOG_HOME``             catdog's own folder: downloads, and ``scans/`` (the scan cache)
``CATDOG_CACHE_MEMORY_MB``  the memory budget per split for decoded images and frozen features
``CATDOG_CPU_DEVICES``      split the CPU into N logical devices (``--strategy mirrored`` on a
                            machine without GPUs, as the tests do)
``CATDOG_DEBUG``            ``1``: print the full traceback under a one-line error
``KERAS_HOME``              Keras' own folder (``~/.keras``): its downloaded weights
``XDG_CACHE_HOME``          where the scan cache goes without ``CATDOG_HOME``
``TF_CONFIG``               the cluster of ``--strategy multiworker`` (TensorFlow's own)
``LOGNAME``, ``USER``       who made a review decision, without ``--who`` (Python's ``getpass``)
==========================  ================================================================

- `check_tensorflow` refuses, in one line, an environment without TensorFlow or with both of
  its distributions (`tensorflow-cpu` and `tensorflow`, which overwrite each other's files):
  catdog's extras `cpu` and `cuda` each install one (see pyproject.toml).
- `import_tensorflow_quietly` imports it without its C++ start-up chatter.
- `configure_devices` applies ``CATDOG_CPU_DEVICES``; it must run before TensorFlow sets up
  its devices (the CLI calls it at start-up).
- `gpus` and `gpu_compute_capability` describe the GPUs TensorFlow sees; `cpu_has_bfloat16`
  the CPU.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from catdog.errors import CatdogError

ENV_DATA = "CATDOG_DATA"
ENV_WEIGHTS = "CATDOG_WEIGHTS"
ENV_HOME = "CATDOG_HOME"
ENV_CACHE_MEMORY = "CATDOG_CACHE_MEMORY_MB"
ENV_CPU_DEVICES = "CATDOG_CPU_DEVICES"
ENV_DEBUG = "CATDOG_DEBUG"
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu")

logger = logging.getLogger(__name__)


def _get(name: str) -> str:
    return os.environ.get(name, "").strip()


# Folders --------------------------------------------------------------------------------------


def data_folder() -> Path | None:
    """`$CATDOG_DATA`, the data folder to use when none is given; None if unset."""
    return Path(value).expanduser() if (value := _get(ENV_DATA)) else None


def local_weights() -> str | None:
    """`$CATDOG_WEIGHTS`: a local copy of MobileNetV2's ImageNet weights; None if unset."""
    return _get(ENV_WEIGHTS) or None


def keras_home() -> Path:
    """Keras' own folder: `$KERAS_HOME`, else `~/.keras`."""
    return Path(_get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def keras_weights_dir() -> Path:
    """Where Keras keeps the pretrained weights it downloads (`~/.keras/models`)."""
    return keras_home() / "models"


def cache_dir() -> Path:
    """Where downloads go: `$CATDOG_HOME`, else Keras' own cache (`~/.keras/datasets`)."""
    if home := _get(ENV_HOME):
        return Path(home).expanduser()
    return keras_home() / "datasets"


def scan_cache_dir() -> Path:
    """Where scans remember what they checked: `$CATDOG_HOME/scans`, else `~/.cache/catdog/scans`."""
    if home := _get(ENV_HOME):
        return Path(home).expanduser() / "scans"
    return Path(_get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "catdog" / "scans"


# Settings ------------------------------------------------------------------------------------


def cache_memory_bytes(default: int) -> int:
    """The memory budget per split for decoded images and frozen features: `$CATDOG_CACHE_MEMORY_MB`,
    else `default` bytes."""
    text = _get(ENV_CACHE_MEMORY)
    if not text:
        return default
    try:
        return int(float(text) * 1e6)
    except ValueError as e:
        raise CatdogError(f"${ENV_CACHE_MEMORY} must be a number of megabytes, got {text!r}") from e


def cpu_devices_requested() -> int:
    """The number of logical CPU devices `$CATDOG_CPU_DEVICES` asks for (1: none asked)."""
    text = _get(ENV_CPU_DEVICES)
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise CatdogError(f"${ENV_CPU_DEVICES} must be a whole number of devices, at least 1; got {text!r}")
    return int(text)


def cluster_config() -> str | None:
    """`$TF_CONFIG`: the multi-worker cluster and this worker's place in it (JSON); None if unset."""
    return _get("TF_CONFIG") or None


def user_name() -> str:
    """The name of the user running catdog (`getpass.getuser`: $LOGNAME, $USER, ..., else the
    account's), or "unknown" where there is none."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no variable set and no account entry (a bare container)
        return "unknown"


def debug() -> bool:
    """Whether `$CATDOG_DEBUG` asks for full tracebacks under errors."""
    return _get(ENV_DEBUG) not in ("", "0")


# TensorFlow and devices ------------------------------------------------------------------------


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


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter hidden.

    TensorFlow writes several lines to file descriptor 2 while loading, before
    `TF_CPP_MIN_LOG_LEVEL` takes effect. They are captured and shown only if the
    import fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # TensorFlow's own Python warnings (retracing when several models run in one process,
    # deprecations inside Keras) are for library developers; catdog reports what users need.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


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


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
