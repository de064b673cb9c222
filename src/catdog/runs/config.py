"""`RunConfig`: a run's `config.json`, its settings written down.

One flat JSON object: the `TrainSettings` (stages as a list of objects), the class names, the
data folder it trained on, where it trained (`strategy`, `replicas`, `workers`, `devices`: the
last session's), the library versions, and a format version. `config.json` is read and
written only through `RunConfig`, which checks what it reads, so that an edited or damaged
file is a one-line error naming what is wrong.

Format 1 (catdog 0.1) had no `backbone`: every pretrained model was MobileNetV2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import CatdogError
from catdog.runs.settings import TrainSettings

CONFIG_FILE = "config.json"
FORMAT_VERSION = 2
PRETRAINED_PRESETS_V1 = ("transfer", "finetune")
# Where a run trained (see catdog.training.distribute.Placement.record); one device where its
# config does not say.
PLACEMENT_KEYS = ("strategy", "replicas", "workers", "devices")
ONE_DEVICE = {"strategy": "none", "replicas": 1, "workers": 1, "devices": []}


@dataclass(frozen=True)
class RunConfig:
    """Everything a run was trained with (see the module's docstring)."""

    settings: TrainSettings
    class_names: tuple[str, ...]
    data: str = ""
    placement: dict[str, Any] = field(default_factory=lambda: dict(ONE_DEVICE))
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings.to_dict(), "class_names": list(self.class_names), "data": self.data,
                **self.placement, "versions": self.versions, "format_version": FORMAT_VERSION}

    def write(self, path: str | Path) -> Path:
        return files.write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, values: Any, source: str | Path = CONFIG_FILE) -> RunConfig:
        """Check and convert what a `config.json` holds; `CatdogError` names what is wrong."""
        if not isinstance(values, dict):
            raise CatdogError(f"{source} does not hold a run's settings (a JSON object)")
        version = values.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CatdogError(f"{source} was written by a newer catdog (format {version}); upgrade catdog to open it")
        missing = [name for name in ("preset", "class_names", "image_size") if name not in values]
        if missing:
            raise CatdogError(f"{source} has no {', '.join(missing)}; it is not a complete catdog run configuration")
        _check(values, source)
        if version == 1:
            values = {**values, "backbone": "mobilenet_v2" if values["preset"] in PRETRAINED_PRESETS_V1 else None}
        try:
            settings = TrainSettings.from_dict(values)
        except (TypeError, ValueError, KeyError) as e:
            raise CatdogError(f"{source} holds settings catdog cannot read ({e})") from e
        placement = {key: values.get(key, ONE_DEVICE[key]) for key in PLACEMENT_KEYS}
        return cls(settings, tuple(values["class_names"]), values.get("data") or "", placement,
                   dict(values.get("versions") or {}))

    @classmethod
    def read(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CatdogError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise CatdogError(f"{path} cannot be read ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_dict(values, path)


def _check(values: dict[str, Any], source: str | Path) -> None:
    names, image_size, preset = values["class_names"], values["image_size"], values["preset"]
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n for n in names)):
        raise CatdogError(f"{source}: class_names must list at least two class names, found {names!r}")
    if len(set(names)) != len(names):
        raise CatdogError(f"{source}: class_names lists a class twice ({names!r})")
    if not (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0):
        raise CatdogError(f"{source}: image_size must be a positive whole number, found {image_size!r}")
    if not isinstance(preset, str) or not preset:
        raise CatdogError(f"{source}: preset must be a model name, found {preset!r}")
