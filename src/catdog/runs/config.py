"""`config.json`: a run's settings written down, with what they were applied to and where.

`RunConfig` is read and written only here, and checks what it reads: a config that is not
a JSON object, misses the preset, the class names or the image size, or was written by a newer
catdog is a one-line `CatdogError` naming the file. The file is flat: the fields of
`TrainSettings` (the stages as dicts), then the class names, the data's location, where the run
trained (`strategy`, `replicas`, `workers`, `devices`), the library versions and a format version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import CatdogError
from catdog.runs.settings import TrainSettings

CONFIG_FILE = "config.json"
# Version 1 (catdog 0.1) had no `backbone` and no `format_version`; every pretrained model was MobileNetV2.
FORMAT_VERSION = 2
PRETRAINED_PRESETS_V1 = ("transfer", "finetune")
# Where a run trained, as `catdog.training.distribute.Placement.record` gives it; a run recorded
# without it trained on one device.
PLACEMENT_DEFAULTS = {"strategy": "none", "replicas": 1, "workers": 1, "devices": []}
REQUIRED = ("preset", "class_names", "image_size")


@dataclass(frozen=True)
class RunConfig:
    """What `config.json` holds: the run's `settings`, its `class_names`, the location of its
    `data` (a folder, or a pack's URL), its `placement` (see `PLACEMENT_DEFAULTS`) and the
    library `versions` it trained with."""

    settings: TrainSettings
    class_names: tuple[str, ...]
    data: str = ""
    placement: dict[str, Any] = field(default_factory=lambda: dict(PLACEMENT_DEFAULTS))
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "class_names": list(self.class_names), "data": self.data,
                **{**PLACEMENT_DEFAULTS, **self.placement}, "versions": dict(self.versions),
                "format_version": self.format_version}

    def write(self, path: str | os.PathLike) -> Path:
        return files.write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values: Any, source: str | os.PathLike = CONFIG_FILE) -> RunConfig:
        """Check and convert what a `config.json` holds; `CatdogError` names what is wrong."""
        if not isinstance(values, dict):
            raise CatdogError(f"{source} does not hold a run's settings (a JSON object)")
        version = values.get("format_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
            raise CatdogError(f"{source} was written by a newer catdog (format {version}); upgrade catdog to open it")
        missing = [name for name in REQUIRED if name not in values]
        if missing:
            raise CatdogError(f"{source} has no {', '.join(missing)}; it is not a complete catdog run configuration")
        _check(values, source)
        settings = dict(values)
        if version == 1:
            settings["backbone"] = "mobilenet_v2" if values["preset"] in PRETRAINED_PRESETS_V1 else None
        try:
            trained_with = TrainSettings.from_dict(settings)
        except (TypeError, ValueError) as e:
            raise CatdogError(f"{source} does not hold a run's settings ({e})") from e
        placement = {key: values.get(key, default) for key, default in PLACEMENT_DEFAULTS.items()}
        return cls(trained_with, tuple(values["class_names"]), str(values.get("data") or ""), placement,
                   dict(values.get("versions") or {}))

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CatdogError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CatdogError(f"{path} cannot be read ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_dict(values, path)


def _check(values: dict[str, Any], source: str | os.PathLike) -> None:
    names = values["class_names"]
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n for n in names)):
        raise CatdogError(f"{source}: class_names must list at least two class names, found {names!r}")
    if len(set(names)) != len(names):
        raise CatdogError(f"{source}: class_names lists a class twice ({names!r})")
    size = values["image_size"]
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise CatdogError(f"{source}: image_size must be a positive whole number, found {size!r}")
    preset = values["preset"]
    if not isinstance(preset, str) or not preset:
        raise CatdogError(f"{source}: preset must be a model name, found {preset!r}")
