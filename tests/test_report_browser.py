"""``report.html`` in a real browser: Debian's Chromium, headless, at laptop and phone widths.

Playwright drives the installed Chromium (no browser download). Every request the page
makes is recorded and aborted: the report must load nothing but itself.
"""

import json
import re

import numpy as np
import pytest
from browser_helpers import chromium_context
from PIL import Image

WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One real Chromium with a fresh, empty profile for this module."""
    yield from chromium_context(tmp_path_factory)


@pytest.fixture(scope="module", params=list(WIDTHS))
def rendered(request, browser, pipeline_run, tmp_path_factory):
    """The report loaded at one width: what the page asked for, its images, a screenshot."""
    width, height = WIDTHS[request.param]
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    requests = []

    def record(route):
        requests.append(route.request.url)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", record)
    # The report's Content-Security-Policy would block a stray fetch before the browser
    # even tries it; the copy without it shows what the page itself would load.
    html = (pipeline_run.out / "report.html").read_text()
    copy = tmp_path_factory.mktemp("page") / "report.html"
    copy.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html))
    assert copy.read_text() != html
    page.goto(copy.as_uri(), wait_until="load")
    images = page.evaluate(
        "() => [...document.images].map(i => ({loaded: i.complete && i.naturalWidth > 0, "
        "src: i.currentSrc.slice(0, 22), width: i.getBoundingClientRect().width}))"
    )
    layout = page.evaluate(
        "() => ({page: document.documentElement.scrollWidth, window: innerWidth, "
        "sections: [...document.querySelectorAll('section')].map(s => s.id)})"
    )
    shot = tmp_path_factory.mktemp("shots") / f"{request.param}.png"
    page.screenshot(path=shot, full_page=True)
    page.close()
    return {
        "device": request.param,
        "width": width,
        "requests": requests,
        "images": images,
        "layout": layout,
        "shot": shot,
        "url": copy.as_uri(),
    }


def test_the_page_makes_no_network_request(rendered):
    assert rendered["requests"] == [rendered["url"]]


def test_every_image_in_the_page_loaded(rendered, pipeline_run):
    images = rendered["images"]
    # 7 tutorial figures, the training curves, the export chart, a gallery for each int8
    # file that answers some test image otherwise than Keras, and the doctor's chart when
    # the int8 .tflite agreed less than 99.5% (a short run may).
    galleries = [
        d for d in (pipeline_run.out / "exports").glob("*.evaluation")
        if json.loads((d / "metrics.json").read_text())["differs_from_keras"]
    ]  # fmt: skip
    doctor = (pipeline_run.out / "doctor_chart.png").is_file()
    # ...and the Confidence section's reliability diagram.
    assert len(images) == 9 + len(galleries) + doctor + 1
    assert all(i["loaded"] for i in images), images
    assert all(i["src"] == "data:image/png;base64," for i in images)
    # Pictures shrink to fit a phone instead of overflowing it.
    assert all(0 < i["width"] <= rendered["width"] for i in images)


def test_nothing_is_wider_than_the_window(rendered):
    layout = rendered["layout"]
    # Wide tables scroll inside their own box; the page itself never scrolls sideways.
    assert layout["page"] <= layout["window"], layout
    assert layout["sections"] == [
        "summary",
        "training",
        "accuracy",
        "network",
        "exports",
        "benchmark",
        "int8",
        "doctor",
        "confidence",
        "mcu",
        "use",
    ]


def test_screenshot_shows_the_report(rendered):
    with Image.open(rendered["shot"]) as im:
        width, height = im.size
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert width == rendered["width"] and height > 3 * WIDTHS[rendered["device"]][1]
    # The dark header band on top...
    assert pixels[:30].reshape(-1, 3).mean(axis=0).max() < 80
    # ...then light sections holding many colors (figures, charts, tables)...
    colors = len(np.unique(pixels.reshape(-1, 3) // 16, axis=0))
    assert colors > 50, f"only {colors} colors: the page rendered almost nothing"
    # ...and no tall blank band where an image failed to draw.
    rows = pixels[200:].std(axis=(1, 2))
    longest_blank = max(len(run) for run in "".join("b" if s < 1 else "x" for s in rows).split("x"))
    assert longest_blank < 400, longest_blank


def test_a_long_training_folds_its_epoch_table_until_asked(browser, tmp_path):
    """100 epochs take about as much page as 3; the full table opens on a click."""
    from report_helpers import make_run

    from edgecnn.pipeline.report import write_report

    def training_height(page) -> float:
        return page.evaluate("document.getElementById('training').offsetHeight")

    heights = {}
    for epochs in (3, 100):
        page = browser.new_page()
        page.set_viewport_size(dict(zip(("width", "height"), WIDTHS["laptop"], strict=True)))
        page.goto(write_report(make_run(tmp_path / str(epochs), epochs=epochs)).as_uri())
        heights[epochs] = training_height(page)
        if epochs == 100:
            page.click("#training summary")
            heights["opened"] = training_height(page)
        page.close()
    assert heights[100] < heights[3] + 500, heights  # 12 rows and a line, not 100 rows
    assert heights["opened"] > heights[100] + 2000, heights
