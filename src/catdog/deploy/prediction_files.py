"""Predictions written to a file, as they come: JSON lines (`.jsonl`) or one Parquet file
(`.parquet`), atomically, over nothing but an earlier predictions file catdog wrote. Both
engines of `catdog predict --out` write through here."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from catdog import files
from catdog.errors import ParameterError

OUTPUT_SUFFIXES = (".jsonl", ".parquet")


def _is_predictions(path: Path) -> bool:
    """A file of predictions catdog wrote: JSON lines or Parquet with a path and a label (or, for
    a multi-label run, labels)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return _has_prediction_fields(pq.read_schema(path).names)
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return not first or _has_prediction_fields(json.loads(first))
    except Exception:  # not JSON, not Parquet, unreadable: not ours
        return False


def _has_prediction_fields(names) -> bool:
    return "path" in names and ("label" in names or "labels" in names)


PREDICTIONS = files.Kind("a predictions file written by catdog", _is_predictions)


def check_target(out: str | os.PathLike) -> Path:
    """Refuse `out` unless it names a .jsonl or .parquet file that is free or an earlier predictions
    file: checked before any prediction is made."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ParameterError("out", f"{{name}} must end in {' or '.join(OUTPUT_SUFFIXES)}, not {out.name}")
    files.check_replaceable(out, PREDICTIONS)
    return out


def write(predictions: Iterable[dict[str, Any]], out: str | os.PathLike, chunk: int = 1024) -> int:
    """Write `predictions` as they come to `out` (.jsonl, or .parquet: one file), atomically, over
    nothing but an earlier predictions file; return how many were written. The file appears only
    once every prediction is written: if `predictions` raises, nothing is left behind."""
    out = check_target(out)
    count = 0
    with files.atomic_path(out, PREDICTIONS) as tmp:
        if out.suffix.lower() == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in predictions:
                    f.write(json.dumps(row) + "\n")
                    count += 1
        else:
            writer, rows = None, []
            for row in predictions:
                rows.append(row)
                count += 1
                if len(rows) == chunk:
                    writer, rows = _write_rows(writer, tmp, rows), []
            if rows or writer is None:
                writer = _write_rows(writer, tmp, rows)
            writer.close()
    return count


def _write_rows(writer, path: Path, rows: list[dict[str, Any]]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({"path": [], "label": [], "probability": []})
    writer = writer or pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    return writer
