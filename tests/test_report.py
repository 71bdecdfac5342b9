"""``report.html`` and the closing summary from a hand-made run folder: no training, fast.

The slow tests in ``test_run.py`` build the report from a real run; here
``report_helpers.make_run`` writes each stage's files with numbers chosen to show one
thing at a time.
"""

from __future__ import annotations

import json
import re

import pytest
from report_helpers import exported_file, make_run

from edgecnn.pipeline.report import write_report
from edgecnn.pipeline.results import RunData
from edgecnn.pipeline.summary import format_summary
from edgecnn.run_folder import EXPORTS_DIR, METRICS_FILE


def _text(html: str) -> str:
    """The page's visible words, tags dropped, white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _section(page: str, anchor: str) -> str:
    return page.split(f'<section id="{anchor}">', 1)[1].split("</section>", 1)[0]


def test_headline_accuracies_say_how_many_images(tmp_path):
    page = write_report(make_run(tmp_path, val_images=149, val_accuracy=1.0)).read_text()
    cards = _text(page.split('<div class="cards">', 1)[1].split('<div class="grid">', 1)[0])
    # Decimals follow the count: one image of 149 is 0.7 points, of 380 is 0.3.
    assert "Validation accuracy 100.0% 149 of 149 validation images" in cards
    assert "Test accuracy 80.0% 304 of 380 test images" in cards


def test_a_run_without_a_validation_count_shows_the_accuracy_alone(tmp_path):
    run = make_run(tmp_path)
    metrics = json.loads((run / METRICS_FILE).read_text())
    del metrics["val_images"]  # written by an older edgecnn
    (run / METRICS_FILE).write_text(json.dumps(metrics))
    assert "Validation accuracy 90.00% Recommended" in _text(write_report(run).read_text())


def test_a_short_training_lists_every_epoch(tmp_path):
    training = _section(write_report(make_run(tmp_path, epochs=3)).read_text(), "training")
    assert "<details" not in training
    assert training.count("<tr>") == 1 + 3
    assert "<td>3 (best)</td>" in training


def test_a_long_training_shows_a_sample_of_epochs_and_folds_the_full_table(tmp_path):
    run = make_run(tmp_path, epochs=100, best_epoch=57)
    training = _section(write_report(run).read_text(), "training")
    shown, folded = training.split("<details>", 1)
    epochs = [int(e.split()[0]) for e in re.findall(r"<tr><td>([^<]+)</td>", shown)]
    assert epochs == [1, 10, 20, 30, 40, 50, 57, 60, 70, 80, 90, 100]
    assert "<td>57 (best)</td>" in shown and "12 of the 100 epochs" in shown
    assert "<summary>All 100 epochs</summary>" in folded
    assert folded.count("<tr>") == 1 + 100


def test_an_int8_file_that_changed_nothing_is_one_line_and_no_column(tmp_path):
    int8 = _section(write_report(make_run(tmp_path)).read_text(), "int8")
    assert (
        "model_int8.onnx : the same top-1 class as Keras on all 1,000 images; nothing changed."
        in _text(int8)
    )
    assert "5 of 1,000 images get another top-1 class" in _text(int8)
    assert int8.count("<table>") == 1  # one table, with a column for model_int8.tflite only
    head = int8.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert "model_int8.tflite" in head and "model_int8.onnx" not in head
    assert "&lt;b&gt;cross&lt;/b&gt;" in int8 and "<b>cross" not in int8


def test_int8_files_that_all_changed_nothing_get_no_table(tmp_path):
    files = [
        exported_file("model_int8.tflite", "tflite", "int8"),
        exported_file("model_int8.onnx", "onnx", "int8"),
    ]
    int8 = _section(write_report(make_run(tmp_path, files=files)).read_text(), "int8")
    assert _text(int8).count("nothing changed") == 2
    assert "<table>" not in int8


def test_int8_files_with_equal_results_share_one_column(tmp_path):
    same = [0.92, 0.78, 0.7]
    files = [
        exported_file("model_int8.tflite", "tflite", "int8", 0.99, same),
        exported_file("model_int8.onnx", "onnx", "int8", 0.99, [0.9, 0.8, 0.71]),
        exported_file("c/", "c", "int8", 0.98, same, backend="c"),
        exported_file("tflm/", "tflm", "int8", 0.98, same, backend="tflm"),
    ]
    int8 = _section(write_report(make_run(tmp_path, files=files)).read_text(), "int8")
    head = re.findall(r"<th[^>]*>([^<]*)</th>", int8.split("</thead>", 1)[0])
    assert head == ["class", "Keras", "model_int8.tflite, c/, tflm/", "model_int8.onnx"]
    assert '92.0% <span class="up">+2.0</span>' in int8


@pytest.mark.parametrize(
    ("float32_us", "picked"),
    [
        (46.0, "model_int8.tflite"),  # 50 us is within 10% of 46: a tie, int8 keeps it
        (40.0, "model_float32.tflite"),  # more than 10% faster: it wins
    ],
)
def test_this_machine_gets_int8_unless_another_file_is_clearly_faster(tmp_path, float32_us, picked):
    latency = {"model_float32.tflite": float32_us, "model_int8.tflite": 50.0}
    run = make_run(tmp_path, latency_us=latency)
    page = write_report(run).read_text()
    card = _text(page.split("Recommended here", 1)[1])[:60]
    assert picked in card
    assert f"predict {run / EXPORTS_DIR / picked}" in _text(_section(page, "use"))
    summary = format_summary(RunData.load(run))
    assert summary.splitlines()[-2] == f"Classify an image on this machine with {picked}:"
    here = next(line for line in summary.splitlines() if "this machine (" in line)
    why = "ties go to int8" if picked.startswith("model_int8") else "more than 10% faster"
    assert why in here
