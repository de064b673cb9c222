"""The trust section of a report (`catdog run`'s): the best model's calibration and its
out-of-distribution flags, from its `metrics.json`."""

from __future__ import annotations

from pathlib import Path

from catdog.report.render import Block, Figure, Heading, Paragraph
from catdog.runs import folder
from catdog.trust.calibration import ECE_BINS


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def trust_blocks(preset: str, run: Path) -> list[Block]:
    """How far the best model's probabilities and its "none of these" can be trusted."""
    metrics = folder.read_json(run / folder.METRICS_FILE) or {}
    calibration, ood = metrics.get("calibration"), metrics.get("ood")
    if calibration is None:
        return []
    blocks: list[Block] = [
        Heading("Can its predictions be trusted?"),
        Paragraph(
            f"A probability should be right as often as it says. Scaled by a temperature of "
            f"{calibration['temperature']:.2f}, fitted on the validation split, `{preset}`'s probabilities have an "
            f"expected calibration error of **{_percent(calibration['ece'])}** on the test split "
            f"({_percent(calibration['ece_uncalibrated'])} unscaled; the mean gap between confidence and accuracy over "
            f"{ECE_BINS} bins of confidence)."
        ),
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
