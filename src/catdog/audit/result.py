"""What an audit found, and its JSON form (`audit.json`, `catdog audit --json`).

Every file is named by the folder as the user gave it joined with its path inside it. The
top-level keys the issue names, most important first within each:

- `duplicates`: groups `{"kind": "exact"|"near", "paths", "splits", "leak"}`; `splits` names
  each file's split (`train`, `validation`, `test`, or `against` for a file of an
  `--against` folder), and `leak` is true when a group spans more than one of them;
- `label_issues`: `{"path", "label", "suggested", "score", "confident"}`, most suspicious first
  (`confident`: flagged by confident learning itself, see `catdog.audit.issues`); in a multi-label
  data set `label` and `suggested` are tags joined by spaces, and `missing` and `wrong` list the tags
  an image probably lacks and probably should not have;
- `outliers`: `{"path", "score"}`, most unusual first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import CatdogError

AGAINST = "against"
FAIL_ON = ("leaks", "label-issues")
JSON_FILE = "audit.json"
HTML_FILE = "audit.html"
KEYS = ("duplicates", "label_issues", "outliers")


def _is_audit_json(path: Path) -> bool:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(values, dict) and all(key in values for key in KEYS)


JSON_KIND = files.Kind(f"an audit written by catdog (JSON with {', '.join(KEYS)})", _is_audit_json)


@dataclass(frozen=True)
class Group:
    kind: str
    paths: list[str]
    splits: list[str]

    @property
    def leak(self) -> bool:
        return len(set(self.splits)) > 1


@dataclass(frozen=True)
class Suspect:
    """An image whose label the other images doubt. In a multi-label data set `label` and
    `suggested` are tags joined by spaces ("" for none), and `missing` and `wrong` say which tags
    it probably lacks and which it probably should not have."""

    path: str
    label: str
    suggested: str
    score: float
    confident: bool  # flagged by confident learning itself (see catdog.audit.issues)
    missing: list[str] | None = None
    wrong: list[str] | None = None

    def describe(self) -> str:
        """The suspicion in words: `labelled cats, looks like dogs (0.97)`, or for tags `tagged cats;
        probably also dogs (0.81)`."""
        if self.missing is None:
            return f"labelled {self.label}, looks like {self.suggested} ({self.score:.2f})"
        doubts = ([f"probably also {' '.join(self.missing)}"] if self.missing else []) + (
            [f"probably not {' '.join(self.wrong)}"] if self.wrong else [])
        return f"tagged {self.label or 'no tag'}; {', '.join(doubts) or 'doubtful'} ({self.score:.2f})"


@dataclass(frozen=True)
class Outlier:
    path: str
    score: float


@dataclass
class AuditResult:
    data: str
    layout: str
    seed: int
    classes: list[str]
    images: int
    against: list[dict[str, Any]]  # {"folder", "images", "skipped"}
    duplicates: list[Group]
    label_issues: list[Suspect]
    outliers: list[Outlier]
    methods: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def leaks(self) -> list[Group]:
        return [group for group in self.duplicates if group.leak]

    def failures(self, fail_on: list[str]) -> list[str]:
        """Why `catdog audit --fail-on` fails, one sentence per reason; empty if it passes."""
        reasons = []
        if "leaks" in fail_on and self.leaks:
            reasons.append(f"{len(self.leaks)} groups of duplicates span splits or --against folders (leaks)")
        if "leaks" in fail_on and (empty := [a["folder"] for a in self.against if not a["images"]]):
            reasons.append(f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no usable image to compare, "
                           "so leaks into it could not be looked for")
        if "label-issues" in fail_on and self.label_issues:
            reasons.append(f"{len(self.label_issues)} suspected label errors")
        return reasons

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["duplicates"] = [{**asdict(group), "leak": group.leak} for group in self.duplicates]
        values["label_issues"] = [{key: value for key, value in asdict(suspect).items() if value is not None}
                                  for suspect in self.label_issues]
        return {key: values[key] for key in (*KEYS, "data", "layout", "seed", "classes", "images", "against",
                                             "methods", "skipped", "warnings", "seconds")}

    def write_json(self, path: str | Path) -> Path:
        """Write `audit.json` (atomically, over nothing but an earlier audit)."""
        return files.write_json(path, self.to_json(), JSON_KIND)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> AuditResult:
        """The result `to_json` wrote (a `KeyError` or `TypeError` if it is not one)."""
        return cls(
            data=values["data"], layout=values["layout"], seed=values["seed"], classes=list(values["classes"]),
            images=values["images"], against=list(values["against"]),
            duplicates=[Group(g["kind"], list(g["paths"]), list(g["splits"])) for g in values["duplicates"]],
            label_issues=[Suspect(s["path"], s["label"], s["suggested"], s["score"], s["confident"])
                          for s in values["label_issues"]],
            outliers=[Outlier(o["path"], o["score"]) for o in values["outliers"]],
            methods=dict(values["methods"]), skipped=list(values.get("skipped", [])),
            warnings=list(values.get("warnings", [])), seconds=values.get("seconds", 0.0),
        )

    @classmethod
    def read(cls, path: str | Path) -> AuditResult:
        """An `audit.json` written by catdog (`path`: the file, or the folder holding it), with a
        one-line error if it is not one."""
        path = Path(path)
        if not path.exists():
            raise CatdogError(f"audit {path} does not exist; write it with `catdog audit --data DIR --out {path}`")
        if path.is_dir():
            path = path / JSON_FILE
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CatdogError(f"{path} does not exist: {path.parent} holds no audit written by `catdog audit --out`"
                              ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CatdogError(f"{path} cannot be read as an audit ({getattr(e, 'strerror', None) or e})") from e
        except (KeyError, TypeError, AttributeError) as e:
            raise CatdogError(f"{path} is not an audit written by catdog (no {e})") from e
