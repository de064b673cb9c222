"""Labelling the unlabelled (active learning): a pool's images, those the run is least sure about first.

A run's model predicts every image of the pool (catdog.deploy.predict). The least certain
come first: those unlike the run's training images (out-of-distribution score above 1,
most unlike first), which may be of neither class, then the rest by margin, the
probability of the run's guess less that of the next class (0: a coin toss). The run's
guess is pre-selected; labelled images export as new rows for the training labels file.

The predictions are kept in the review folder (`predictions.json`), so that restarting the
review does not predict again; they are made again when the run's model or the pool's
files have changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catdog import files
from catdog.data.images import find_images
from catdog.deploy.predict import Predictor
from catdog.formats import AUTO
from catdog.review.queue import POOL, SKIPPED, Item, Member
from catdog.runs import Run
from catdog.runs.folder import read_json


def margin(probabilities: dict[str, float]) -> float:
    """The probability of the most probable class less that of the next."""
    first, second = sorted(probabilities.values(), reverse=True)[:2]
    return first - second


def uncertainty_order(prediction: dict[str, Any]) -> tuple:
    """Sorts the least certain first: out of distribution (most unlike first), then by margin."""
    unlike = prediction["in_distribution"] is False
    return (not unlike, -prediction["ood_score"] if unlike else margin(prediction["probabilities"]),
            prediction["path"])


def pool_items(pool: Path, root: Path, run: Run, cache: Path, runtime: str = AUTO) -> list[Item]:
    """The queue of the images of the folder `pool` for `run`, named relative to `root`."""
    predicted = _predictions(pool, run, cache, runtime)
    items = []
    for prediction in sorted(predicted["predictions"], key=uncertainty_order):
        path = Path(prediction["path"])
        relative = path.relative_to(root).as_posix()
        probabilities = prediction["probabilities"]
        guess = prediction["label"]
        if prediction["in_distribution"] is False:
            reason = (f"Unlike the images the run was trained on (out-of-distribution score "
                      f"{prediction['ood_score']:.2f}): perhaps neither {' nor '.join(run.class_names)}; "
                      f"its guess is {guess} ({probabilities[guess]:.0%}).")
        else:
            second = sorted(probabilities, key=probabilities.get)[-2]
            reason = (f"The run is unsure: {guess} {probabilities[guess]:.0%} against {second} "
                      f"{probabilities[second]:.0%}.")
        items.append(Item(f"{POOL}:{relative}", POOL, (Member(relative, str(path)),), reason, guess,
                          round(margin(probabilities), 4),
                          details={"probabilities": probabilities, "ood_score": prediction["ood_score"]}))
    items += [Item(f"{SKIPPED}:{Path(path).relative_to(root).as_posix()}", SKIPPED,
                   (Member(Path(path).relative_to(root).as_posix(), path),), f"Cannot be used: {reason}.")
              for path, reason in predicted["skipped"]]
    return items


def _predictions(pool: Path, run: Run, cache: Path, runtime: str) -> dict[str, Any]:
    """The run's predictions for the pool's images, from `cache` while they are current."""
    found = [os.fspath(path) for path in find_images([pool])]
    model = run.runtime_for(runtime)[1]
    made_for = {"run": str(run.path.resolve()), "model": str(model), "model_mtime": model.stat().st_mtime,
                "files": found}
    cached = read_json(cache)
    if isinstance(cached, dict) and all(cached.get(key) == value for key, value in made_for.items()):
        return cached
    skipped: list[tuple[str, str]] = []
    predictions = list(Predictor(run, runtime=runtime).predict_paths(found, on_skip=lambda *s: skipped.append(s)))
    result = {**made_for, "predictions": predictions, "skipped": skipped}
    files.write_json(cache, result)
    return result
