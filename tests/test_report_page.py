"""`catdog run`'s report in a real headless Chromium (conftest's `browser`), at a laptop's width and
at a phone's: it never scrolls sideways, and the gallery captions are readable at 100 % zoom."""

from __future__ import annotations

import pytest

from catdog.exercise import exercise_settings, run_exercise

from conftest import write_image

pytestmark = pytest.mark.slow

# Text smaller than this is hard to read on a screen at 100 % zoom.
SMALLEST_CAPTION_PX = 11


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """An exercise whose test images are all labelled with the other colour, so that its report has
    misclassified images to show (a model that learnt the colours gets every one of them wrong)."""
    root = tmp_path_factory.mktemp("report")
    colours = {"red": (210, 60, 40), "blue": (40, 80, 210)}
    for label, color in colours.items():
        other = next(c for name, c in colours.items() if name != label)
        for split, count, shown in (("train", 8, color), ("validation", 4, color), ("test", 3, other)):
            for i in range(count):
                write_image(root / "data" / split / label / f"{label}-{split}-{i}.jpg", color=shown, seed=i)
    summary = run_exercise(root / "data", exercise_settings(["scratch"], epochs=2, image_size=32),
                           out=root / "exercise")
    return root / "exercise" / "report.html", summary


@pytest.mark.parametrize("width", [1280, 420])
def test_the_report_fits_the_screen_and_its_captions_are_readable(browser, report, width):
    path, summary = report
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(path.as_uri())

    sideways = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert sideways <= 0, f"the page scrolls sideways by {sideways} px at {width} px"
    captions = page.locator(".gallery figcaption")
    mistakes = summary["models"][0]["test_n"] - round(summary["models"][0]["test_accuracy"]
                                                      * summary["models"][0]["test_n"])
    assert mistakes > 0 and captions.count() >= mistakes  # the misclassified images, and the audit's duplicates
    sizes = captions.evaluate_all("""captions => captions.map(c => [c.getBoundingClientRect().height,
                                                                  parseFloat(getComputedStyle(c).fontSize)])""")
    assert all(height >= SMALLEST_CAPTION_PX and font >= SMALLEST_CAPTION_PX for height, font in sizes), sizes
    # The first screen names the chosen model and its test score.
    first_screen = page.evaluate("() => document.body.innerText.slice(0, 1500)")
    accuracy = summary["models"][0]["test_accuracy"]
    assert f"scratch is the model chosen by validation accuracy: it scores {100 * accuracy:.1f} %" in first_screen
    page.close()
