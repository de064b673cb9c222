"""`RunConfig`: a run's `config.json`, its settings written down with what they trained on.

`config.json` is one flat JSON object: the fields of `TrainSettings` (stages as objects),
the class names, the data folder (or a pack's URL), where it trained (strategy, replicas,
workers, devices: the last session's), the library versions, and a format version. It is
read and written only through `RunConfig`, which checks what it reads.

Format 1 (catdog 0.1) had no `backbone` (every pretrained model was MobileNetV2); runs
recorded without `stages` get them from their preset (see `TrainSettings.from_dict`).
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
# Where a run trained, as `catdog.training.distribute.Placement.record` gives it.
PLACEMENT_KEYS = ("strategy", "replicas", "workers", "devices")
ONE_DEVICE = {"strategy": "none", "replicas": 1, "workers": 1, "devices": []}


@dataclass(frozen=True)
class RunConfig:
    """What `config.json` holds (see the module's docstring)."""

    settings: TrainSettings
    class_names: tuple[str, ...]
    data: str = ""
    placement: dict[str, Any] = field(default_factory=lambda: dict(ONE_DEVICE))
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = self.settings.to_dict()
        return {"preset": values.pop("preset"), "class_names": list(self.class_names), "data": self.data, **values,
                **self.placement, "versions": dict(self.versions), "format_version": FORMAT_VERSION}

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
        placement = {**ONE_DEVICE, **{key: values[key] for key in PLACEMENT_KEYS if key in values}}
        return cls(settings, tuple(values["class_names"]), values.get("data") or "", placement,
                   dict(values.get("versions") or {}))

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


def _check(values: dict[str, Any], source: str | Path) -> None:
    names, size, preset = values["class_names"], values["image_size"], values["preset"]
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n for n in names)):
        raise CatdogError(f"{source}: class_names must list at least two class names, found {names!r}")
    if len(set(names)) != len(names):
        raise CatdogError(f"{source}: class_names lists a class twice ({names!r})")
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise CatdogError(f"{source}: image_size must be a positive whole number, found {size!r}")
    if not isinstance(preset, str) or not preset:
        raise CatdogError(f"{source}: preset must be a model name, found {preset!r}")
