"""`config.json`: a run's settings as recorded, with what it trained on and where.

It is the run's `TrainSettings` written down, one key per setting, with the class names, the
task (one class per image, or tags), the data's location, the devices it trained on (for the
last session) and the library versions. Format 2 added `backbone` and `format_version` to
catdog 0.1's format 1, whose pretrained models were all MobileNetV2; format 3 added `task` for
multi-label runs, which alone are written in it (so that a catdog that cannot predict tags
refuses them); all three open. `RunConfig` reads and writes it, and checks what it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catdog import files
from catdog.data.labels import MULTICLASS, MULTILABEL
from catdog.errors import CatdogError
from catdog.runs.settings import TrainSettings

CONFIG_FILE = "config.json"
FORMAT_VERSION = 3
# What a run of one class per image is written as: the format before `task`.
MULTICLASS_FORMAT_VERSION = 2
PRETRAINED_PRESETS_V1 = ("transfer", "finetune")
# Where a run trained, as the last session recorded it (see catdog.training.distribute).
PLACEMENT_KEYS = ("strategy", "replicas", "workers", "devices")
ONE_DEVICE = {"strategy": "none", "replicas": 1, "workers": 1, "devices": []}


@dataclass(frozen=True)
class RunConfig:
    """What a run's `config.json` holds: its settings, its classes (tags, for a multi-label
    `task`), the data folder (or pack location) it trained on, where it trained (`placement`:
    see `PLACEMENT_KEYS`) and the versions of the libraries that trained it."""

    settings: TrainSettings
    class_names: tuple[str, ...]
    data: str = ""
    placement: dict[str, Any] = field(default_factory=lambda: dict(ONE_DEVICE))
    versions: dict[str, str] = field(default_factory=dict)
    task: str = MULTICLASS

    def to_dict(self) -> dict[str, Any]:
        task = {"task": self.task, "format_version": FORMAT_VERSION} if self.task == MULTILABEL else {
            "format_version": MULTICLASS_FORMAT_VERSION}
        return {**self.settings.to_dict(), "class_names": list(self.class_names), "data": self.data,
                **self.placement, "versions": self.versions, **task}

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
        task = values.get("task", MULTICLASS)
        if task not in (MULTICLASS, MULTILABEL):
            raise CatdogError(f"{source}: task must be {MULTICLASS} or {MULTILABEL}, found {task!r}")
        _check(values, source, task)
        if version == 1:
            values = {**values, "backbone": "mobilenet_v2" if values["preset"] in PRETRAINED_PRESETS_V1 else None}
        try:
            settings = TrainSettings.from_dict(values)
        except (TypeError, ValueError) as e:
            raise CatdogError(f"{source} holds settings catdog cannot read ({e})") from e
        placement = {**ONE_DEVICE, **{key: values[key] for key in PLACEMENT_KEYS if key in values}}
        return cls(settings, tuple(values["class_names"]), str(values.get("data") or ""), placement,
                   dict(values.get("versions") or {}), task)

    @classmethod
    def read(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CatdogError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from e
        except (OSError, UnicodeDecodeError) as e:
            raise CatdogError(f"{path} cannot be read ({getattr(e, 'strerror', None) or e})") from e
        return cls.from_dict(values, path)


def _check(values: dict[str, Any], source: str | Path, task: str) -> None:
    names = values["class_names"]
    fewest = 1 if task == MULTILABEL else 2
    if not (isinstance(names, list) and len(names) >= fewest and all(isinstance(n, str) and n for n in names)):
        raise CatdogError(f"{source}: class_names must list at least {fewest} class names, found {names!r}")
    if len(set(names)) != len(names):
        raise CatdogError(f"{source}: class_names lists a class twice ({names!r})")
    size = values["image_size"]
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise CatdogError(f"{source}: image_size must be a positive whole number, found {size!r}")
    if not isinstance(values["preset"], str) or not values["preset"]:
        raise CatdogError(f"{source}: preset must be a model name, found {values['preset']!r}")
