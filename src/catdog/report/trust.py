"""The trust section of a report (`catdog run`'s): the best model's calibration and its
out-of-distribution flags, from its `metrics.json`."""

from __future__ import annotations

from pathlib import Path

from catdog.report.render import Block, Figure, Heading, Paragraph
from catdog.runs import folder
from catdog.trust.calibration import ECE_BINS


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def calibration_sentence(preset: str, calibration: dict) -> str:
    """The test split's calibration error with and without the run's temperature, saying plainly
    when the temperature made it worse."""
    temperature, ece, unscaled = calibration["temperature"], calibration["ece"], calibration["ece_uncalibrated"]
    if temperature == 1.0:
        return (f"`{preset}`'s probabilities are not scaled (no temperature helped on validation images it was not "
                f"fitted on); they have an expected calibration error of **{_percent(ece)}** on the test split (the "
                f"mean gap between confidence and accuracy over {ECE_BINS} bins of confidence).")
    sentence = (f"Scaled by a temperature of {temperature:.2f}, fitted on the validation split, `{preset}`'s "
                f"probabilities have an expected calibration error of **{_percent(ece)}** on the test split "
                f"({_percent(unscaled)} unscaled; the mean gap between confidence and accuracy over {ECE_BINS} bins "
                "of confidence).")
    if ece > unscaled:
        sentence += (" **On the test split the temperature made the probabilities worse calibrated**, though it "
                     "had improved both the loss and the calibration error of validation images it was not fitted on.")
    return sentence


def _validation_sentence(recorded: dict) -> str:
    """What decided the temperature, from `calibration.json`."""
    figures = recorded.get("validation") or {}
    if "ece_held_out" not in figures:
        return ""
    return (f"On validation images it was not fitted on ({figures['folds']} folds), a fitted temperature took the "
            f"loss from {figures['loss_held_out']:.4f} to {figures['loss_held_out_calibrated']:.4f} and the "
            f"calibration error from {_percent(figures['ece_held_out'])} to "
            f"{_percent(figures['ece_held_out_calibrated'])}: "
            + ("kept, as it lowered both." if figures.get("kept") else "not kept, as it did not lower both."))


def trust_blocks(preset: str, run: Path) -> list[Block]:
    """How far the best model's probabilities and its "none of these" can be trusted."""
    metrics = folder.read_json(run / folder.METRICS_FILE) or {}
    calibration, ood = metrics.get("calibration"), metrics.get("ood")
    if calibration is None:
        return []
    blocks: list[Block] = [
        Heading("Can its predictions be trusted?"),
        Paragraph(f"A probability should be right as often as it says. {calibration_sentence(preset, calibration)} "
                  f"{_validation_sentence(folder.read_json(run / folder.CALIBRATION_FILE) or {})}".strip()),
        Figure(run / folder.RELIABILITY_PLOT, f"`{preset}`: reliability on the test split, before and after "
                                            "temperature scaling."),
    ]
    if ood is not None:
        blocks.append(Paragraph(
            f"Photos unlike the training images are answered as such: the detector ({ood['method']}, on the "
            f"features the classifier reads) flags {_percent(ood['flagged'])} of the test photos, for a threshold set "
            f"on the validation photos for at most {_percent(ood['rate'])} false alarms."
        ))
    return blocks
