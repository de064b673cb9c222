"""The trust section of a report (`catdog run`'s): how far the chosen model's probabilities and
its "unlike the training images" can be trusted, in plain sentences, from its `metrics.json`."""

from __future__ import annotations

from pathlib import Path

from catdog.outputs import UNLIKE_TRAINING_IMAGES
from catdog.report.render import Block, Figure, Heading, Paragraph
from catdog.runs import folder
from catdog.terminal import percent
from catdog.trust.calibration import ECE_BINS


def _temperature_in_words(temperature: float | list[float]) -> str:
    if not isinstance(temperature, int | float):  # a multi-label model: one per tag
        return (f"Here each tag has its own temperature, from {min(temperature):.2f} to {max(temperature):.2f} (1: "
                "left as it was), and each probability says how likely that one tag is.")
    if temperature == 1.0:
        return ("Here its probabilities are left as they are: a temperature fitted on validation did not make them "
                "more honest on validation photos it was not fitted on.")
    effect = "less sure of itself (it was overconfident)" if temperature > 1 else "surer of itself (it was too timid)"
    return f"Here the temperature is {temperature:.2f}, which makes it {effect}."


def _worse_sentence(calibration: dict) -> str:
    """Said plainly where the run's temperature made the test split's calibration worse."""
    if calibration["ece"] <= calibration["ece_uncalibrated"]:
        return ""
    return ("**On the test split the temperature made the probabilities worse calibrated**, though it had improved "
            "both the loss and the calibration error of validation images it was not fitted on.")


def _validation_sentence(recorded: dict) -> str:
    """What decided the temperature, from `calibration.json`."""
    figures = recorded.get("validation") or {}
    if "ece_held_out" not in figures:
        return ""
    return (f"On validation images it was not fitted on ({figures['folds']} folds), a fitted temperature took the "
            f"loss from {figures['loss_held_out']:.4f} to {figures['loss_held_out_calibrated']:.4f} and the "
            f"calibration error from {percent(figures['ece_held_out'])} to "
            f"{percent(figures['ece_held_out_calibrated'])}: "
            + ("kept, as it lowered both." if figures.get("kept") else "not kept, as it did not lower both."))


def trust_blocks(preset: str, run: Path) -> list[Block]:
    """How far the best model's probabilities and its "unlike the training images" can be trusted."""
    metrics = folder.read_json(run / folder.METRICS_FILE) or {}
    calibration, ood = metrics.get("calibration"), metrics.get("ood")
    if calibration is None:
        return []
    sentences = [
        "**Is \"90 %\" right nine times in ten?** A model's probabilities can claim more, or less, than it delivers. "
        "catdog checks them on the validation photos and, where that helps, divides the model's raw scores by one "
        f"number fitted there, a temperature. {_temperature_in_words(calibration['temperature'])}",
        f"On the test photos, how sure `{preset}` was differs from how often it was right by "
        f"**{percent(calibration['ece'])}** on average ({percent(calibration['ece_uncalibrated'])} before the "
        f"temperature; the expected calibration error, over {ECE_BINS} ranges of confidence).",
        _worse_sentence(calibration),
        _validation_sentence(folder.read_json(run / folder.CALIBRATION_FILE) or {}),
    ]
    blocks: list[Block] = [
        Heading("Can its predictions be trusted?"),
        Paragraph(" ".join(sentence for sentence in sentences if sentence)),
        Figure(run / folder.RELIABILITY_PLOT,
               f"`{preset}` on the test photos, before and after the temperature: for each range of confidence, how "
               "often it was right (bars) against what it claimed (the dashed diagonal); under each, how many photos "
               "fell in each range."),
    ]
    if ood is not None:
        measure = {"knn": "the training photos it is most like (k-nearest neighbours)",
                   "mahalanobis": "the training photos of each class (the Mahalanobis distance)"}.get(
                       ood["method"], "the training photos")
        blocks.append(Paragraph(
            "**Photos of something else.** Shown a photo of something else, a classifier still answers one of its "
            "classes. So catdog also measures how far what the model sees in a photo is from "
            f"{measure}, and calls a photo \"{UNLIKE_TRAINING_IMAGES}\" when it is farther than all but "
            f"{percent(ood['rate'])} of the validation photos are. It called **{percent(ood['flagged'])}** of the "
            "test photos so (every test photo is of a class it was trained on, so these are false alarms). "
            "`catdog predict` and the web "
            "page say it of every such photo."
        ))
    return blocks
