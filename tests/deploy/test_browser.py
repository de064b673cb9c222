"""The page in a real headless Chromium (Debian's, driven by Playwright, see conftest's `browser`) against a real
server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from catdog.deploy.predict import Predictor
from catdog.deploy.serve.app import create_app
from catdog.outputs import UNLIKE_TRAINING_IMAGES

from conftest import live_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_run):
    with live_server(create_app(tiny_run)) as url:
        yield url


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server + "/")
    yield page
    assert all(url.startswith(server) or url.startswith("blob:") for url in requests), "the page fetched from elsewhere"
    page.close()


@pytest.fixture
def cat_photo(reference_data) -> Path:
    return reference_data / "validation" / "cats" / "cat.2005.jpg"


def expect_card_shows(card, prediction) -> None:
    """The card shows the predicted class and one bar per class with its probability."""
    assert card.locator(".label").inner_text() == prediction["label"]
    rows = card.locator(".row")
    assert rows.count() == len(prediction["probabilities"])
    for i, (name, p) in enumerate(prediction["probabilities"].items()):
        row = rows.nth(i)
        assert row.get_attribute("data-class") == name
        pct = row.locator(".pct")
        assert pct.inner_text() == f"{100 * p:.1f}\u00a0%"
        # On one line, even "100.0 %" on a narrow card.
        assert pct.evaluate("e => e.getBoundingClientRect().height < 1.6 * parseFloat(getComputedStyle(e).fontSize)")
        width = row.locator(".fill").evaluate("e => e.style.width")
        assert width == f"{100 * p:.1f}%"
    assert card.locator(".row.best").get_attribute("data-class") == prediction["label"]
    assert card.locator("img.photo").evaluate("img => img.complete && img.naturalWidth") > 0


def test_picking_a_real_cat_photo_shows_its_prediction(page, tiny_run, cat_photo):
    expected = next(Predictor(tiny_run).predict_paths([cat_photo]))
    assert page.locator("#model").inner_text() == ("Model: tiny. It tells cats, dogs apart at 64 px, 50.0\u00a0% right "
                                                   "on its test images.")

    page.set_input_files("#picker", str(cat_photo))

    card = page.locator(".card.done")
    card.wait_for(timeout=30_000)
    assert card.locator(".name").inner_text() == cat_photo.name
    expect_card_shows(card, expected)


def test_dropping_files_shows_a_card_for_each(page, tiny_run, cat_photo):
    expected = next(Predictor(tiny_run).predict_paths([cat_photo]))
    files = [
        {"name": cat_photo.name, "type": "image/jpeg", "data": base64.b64encode(cat_photo.read_bytes()).decode()},
        {"name": "notes.jpg", "type": "image/jpeg", "data": base64.b64encode(b"not a photo").decode()},
    ]
    transfer = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return transfer;
        }""",
        files,
    )

    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})

    page.locator(".card.done").wait_for(timeout=30_000)
    page.locator(".card.failed").wait_for(timeout=30_000)
    assert page.locator(".card").count() == 2
    expect_card_shows(page.locator(".card.done"), expected)
    assert page.locator(".card.failed .label").inner_text() == "notes.jpg: not an image"


@pytest.fixture(scope="module")
def trusted_server(trusted_run):
    with live_server(create_app(trusted_run)) as url:
        yield url


def test_a_photo_of_something_else_is_unlike_the_training_images_and_why_shows_a_captioned_heatmap(
        browser, trusted_server, trusted_run, other_photo, cat_photo):
    expected = list(Predictor(trusted_run).predict_paths([other_photo, cat_photo]))
    assert [p["in_distribution"] for p in expected] == [False, True]  # what the page must show
    page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone's width: one card per row
    # The browser asks for the page's icon on its own schedule, after the page or after its first requests.
    with page.expect_request_finished(lambda request: request.url == trusted_server + "/favicon.svg",
                                      timeout=30_000) as icon:
        page.goto(trusted_server + "/")
    assert icon.value.response().status == 200
    page.locator("#model").filter(has_text="cats, dogs").wait_for(timeout=30_000)

    page.set_input_files("#picker", [str(other_photo), str(cat_photo)])

    page.locator(".card.done").nth(1).wait_for(timeout=60_000)
    other, cat = page.locator(".card").nth(0), page.locator(".card").nth(1)
    assert other.locator(".name").inner_text() == other_photo.name
    assert other.locator(".label").inner_text() == UNLIKE_TRAINING_IMAGES  # as `catdog predict` says it
    assert "unlike" in other.get_attribute("class") and "unlike" not in cat.get_attribute("class")
    expect_card_shows(cat, expected[1])
    assert cat.locator(".label").inner_text() == "cats"

    assert not cat.locator(".heatmap").is_visible()
    cat.locator(".why").click()
    # The first explanation loads the Keras model: the button says so while it waits.
    assert cat.locator(".why").inner_text().startswith("explaining")
    heatmap = cat.locator(".heatmap")
    heatmap.wait_for(state="visible", timeout=60_000)
    assert cat.locator(".why").inner_text() == "why?"
    assert cat.locator(".explanation figcaption").inner_text() == (
        "Red: the parts of the photo that raised the score of cats most; blue: parts that did not matter.")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=heatmap.element_handle())
    assert heatmap.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [224, 224]
    cat.locator(".why").click()  # the toggle hides it again
    assert not heatmap.is_visible()
    page.close()
