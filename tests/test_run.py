"""``edgecnn run`` end to end on a small budget: a failed export stage, then ``--resume``."""

import hashlib
import html
import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, invoke
from PIL import Image
from shared import EXPORTED_FILES, TINY

from edgecnn.pipeline import STAGES
from edgecnn.run_folder import FIGURE_FILES as FIGURES
from edgecnn.run_folder import new_run_dir, point_latest
from edgecnn.runtime import load_classifier

EXPORTED = list(EXPORTED_FILES)
#: What edgecnn run adds for microcontrollers; the runtime loads the C library's folder.
MCU_FOLDERS = ["c/", "tflm/"]
RUNNABLE = [*EXPORTED, "c/"]


def test_a_failed_stage_stops_the_run_with_one_line_and_keeps_earlier_stages(pipeline_run):
    assert_one_line_error(
        pipeline_run.failed, match="stage 'export' failed: no space left on the device", code=2
    )
    assert "continue with: edgecnn run --resume --out" in pipeline_run.failed.stderr
    stages = pipeline_run.failed_state["stages"]
    assert [stages[s]["status"] for s in ("train", "evaluate", "export")] == [
        "done",
        "done",
        "failed",
    ]
    assert stages["export"]["error"] == "no space left on the device"
    assert "bench" not in stages and "report" not in stages
    # Two files were converted and verified before the failure, in a folder beside the
    # run's: an export replaces exports/ whole or not at all, so none of them stays.
    assert len(pipeline_run.exports_tried_before_failure) == 3
    assert pipeline_run.exports_after_failure == []
    assert pipeline_run.export_leftovers == []


def test_resume_continues_from_the_first_unfinished_stage(pipeline_run):
    result = pipeline_run.resumed
    assert result.exit_code == 0, result.stderr
    assert "[1/5] train: done earlier, kept" in result.stdout
    assert "[2/5] evaluate: done earlier, kept" in result.stdout
    assert "[3/5] export\n" in result.stdout
    # Training did not run again: the very same model file went into the exports.
    model = pipeline_run.out / "model.keras"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == pipeline_run.model_sha_after_failure
    state = json.loads((pipeline_run.out / "run.json").read_text())
    assert [state["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    assert state["stages"]["export"]["rejected"] == []  # which files failed, and why
    assert state["stages"]["train"] == pipeline_run.failed_state["stages"]["train"]


def test_every_exported_model_loads_in_the_runtime_and_classifies_the_sample(pipeline_run):
    exports = pipeline_run.out / "exports"
    report = json.loads((exports / "export_report.json").read_text())
    assert [f["file"] for f in report["files"]] == EXPORTED + MCU_FOLDERS
    assert all(f["passed"] for f in report["files"])
    assert not list(exports.glob("*.rejected")) and not list(exports.glob(".*tmp*"))
    labels = {
        load_classifier(exports / name, backend="c" if name == "c/" else "auto").classify(
            pipeline_run.out / "sample.png"
        )[0][0]
        for name in RUNNABLE
    }  # a C library is code: loaded only when asked for
    assert len(labels) == 1  # every format agrees on the sample picture


def test_every_json_file_parses_and_holds_what_the_report_needs(pipeline_run):
    out = pipeline_run.out
    files = sorted(out.rglob("*.json"))
    assert {p.name for p in files} >= {
        "run.json",
        "config.json",
        "history.json",
        "metrics.json",
        "bench.json",
        "export_report.json",
        "calibration.json",
        "model_int8.tflite.json",
    }
    for path in files:
        json.loads(path.read_text())
    bench = json.loads((out / "bench.json").read_text())
    assert [r["model"] for r in bench["results"]] == RUNNABLE
    for r in bench["results"]:
        assert r["latency_us"]["p50"] > 0 and r["raw_latency_us"]["p50"] > 0
        assert set(r["throughput"]) == {"1", "32", "256"}
    run = json.loads((out / "run.json").read_text())
    assert run["environment"]["versions"]["TensorFlow"]
    assert run["environment"]["versions"]["LiteRT"]
    assert run["environment"]["versions"]["onnxruntime"]
    assert run["environment"]["machine"]["cores"] >= 1


def test_every_png_decodes_and_is_not_blank(pipeline_run):
    out = pipeline_run.out
    pngs = sorted(out.glob("*.png"))
    assert {p.name for p in pngs} == {
        *FIGURES,
        "training_curves.png",
        "export_chart.png",
        "sample.png",
        "reliability.png",
    }
    for path in pngs:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("L"), dtype=np.float32)
        assert pixels.std() > 5, f"{path.name} looks blank"
        assert len(np.unique(pixels)) > 8, f"{path.name} has almost no detail"


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src", "action", "poster", "srcset"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])


def test_report_is_self_contained(pipeline_run):
    page = (pipeline_run.out / "report.html").read_text()
    parser = _Sources()
    parser.feed(page)
    # 7 tutorial figures, the training curves, the export chart, and for each int8 file
    # that answers some image otherwise than Keras, a gallery of those images.
    galleries = [
        d for d in (pipeline_run.out / "exports").glob("*.evaluation")
        if json.loads((d / "metrics.json").read_text())["differs_from_keras"]
    ]  # fmt: skip
    assert galleries
    # One reliability diagram in the Confidence section.
    assert len(parser.images) == len(FIGURES) + 2 + len(galleries) + 1
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert all(link.startswith("#") for link in parser.links), parser.links
    assert "<script" not in page.lower()
    assert not re.search(r"https?://", page), "the page names a network address"
    assert "default-src 'none'" in page  # and forbids any fetch, should one slip in


def test_report_shows_every_section(pipeline_run):
    page = (pipeline_run.out / "report.html").read_text()
    for text in (
        "Test accuracy",
        "Machine and versions",
        "Time per stage",
        "Loss and accuracy",
        "most often mistaken for",
        "Confusion matrix",
        "Misclassified",
        "conv1 filters",
        "conv2 outputs",
        "size ratio",
        "agreement",
        "gate",
        "raw p50",
        "batch 256",
        # What int8 changed: a line per file, one table per class with a column per
        # distinct result, and the images each int8 file answers otherwise.
        "<li><code>model_int8.tflite</code>: ",
        "<li><code>model_int8.onnx</code>: ",
        '<th>class</th><th class="num">Keras</th>',
        "whose top-1 class from model_int8.tflite differs from the Keras model",
        "whose top-1 class from model_int8.onnx differs from the Keras model",
    ):
        assert text in page, text
    exports = pipeline_run.out / "exports"
    for name in ("model_int8.tflite", "model_int8.onnx", "c"):
        metrics = json.loads((exports / f"{name}.evaluation" / "metrics.json").read_text())
        row = next(f for f in json.loads((exports / "export_report.json").read_text())["files"]
                   if f["file"].rstrip("/") == name)  # fmt: skip
        assert metrics["keras_agreement"] == pytest.approx(row["agreement"], abs=1e-9)
    for version in ("TensorFlow", "LiteRT", "onnxruntime"):
        assert f"<dt>{version}</dt>" in page


def test_summary_ends_with_a_predict_command_that_works(pipeline_run):
    stdout = pipeline_run.resumed.stdout
    assert "Accuracy on Test-Set:" in stdout and "9 of 9 files passed" in stdout
    command = shlex.split(stdout.strip().splitlines()[-1])
    # The bare name when it is on PATH, else the path of the running one (.venv/bin/...).
    assert Path(command[0]).name == "edgecnn" and command[1] == "predict"
    assert Path(command[2]).name in EXPORTED  # this machine's pick, a file the runtime loads
    assert "Recommended files, per target:" in stdout and "Raspberry Pi, 32-bit OS" in stdout
    result = invoke(*command[1:])
    assert result.exit_code == 0, result.stderr
    assert "sample.png" in result.stdout


def test_resume_refuses_changed_options(pipeline_run):
    result = invoke("run", "--resume", "--out", pipeline_run.out, "--epochs", 3)
    assert_one_line_error(result, match="drop --epochs")


def test_resume_without_a_run_is_one_line(tmp_path):
    assert_one_line_error(invoke("run", "--resume", "--out", tmp_path), match="nothing to resume")
    (tmp_path / "run.json").write_text("{not json")
    assert_one_line_error(invoke("run", "--resume", "--out", tmp_path), match="unreadable")


def test_a_new_run_never_mixes_with_an_old_one(tmp_path, fashion_dir):
    (tmp_path / "run.json").write_text("{}")
    result = invoke("run", "--out", tmp_path, "--data-dir", fashion_dir)
    assert_one_line_error(result, match="already holds a run")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--epochs", "0"], "--epochs"),
        (["--data-dir", "/nonexistent/data"], "does not exist"),
        (["--dataset", "cifar"], "--dataset"),
        (["--bench-runs", "1"], "--bench-runs"),
    ],
)
def test_bad_options_are_answered_before_any_work(tmp_path, args, match):
    out = tmp_path / "new-run"
    assert_one_line_error(invoke("run", "--out", out, *args), match=match)
    assert not out.exists()  # no empty run folder is left behind


def test_default_run_folders_are_unique_and_latest_follows_them(tmp_path):
    first = new_run_dir(tmp_path)
    second = new_run_dir(tmp_path)  # the same second: another name, never the same folder
    assert second != first and second.parent == tmp_path
    assert first.is_dir() and second.is_dir()
    assert point_latest(first) == tmp_path / "latest"
    assert point_latest(second) == tmp_path / "latest"
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert Path((tmp_path / "latest").readlink()) == Path(second.name)  # relative: movable


def test_latest_is_left_alone_when_it_is_a_real_folder(tmp_path):
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "model.keras").write_text("from edgecnn train")
    run = tmp_path / "20260101-000000"
    run.mkdir()
    assert point_latest(run) is None
    assert (tmp_path / "latest" / "model.keras").read_text() == "from edgecnn train"


@pytest.mark.parametrize("opened", [True, False])
def test_open_shows_the_report_and_resume_of_a_finished_run_redoes_nothing(
    pipeline_run, monkeypatch, opened
):
    import webbrowser

    urls = []
    monkeypatch.setattr(webbrowser, "open", lambda url: urls.append(url) or opened)
    before = (pipeline_run.out / "run.json").read_text()
    result = invoke("run", "--resume", "--out", pipeline_run.out, "--open")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("done earlier, kept") == len(STAGES)
    assert (pipeline_run.out / "run.json").read_text().count('"status": "done"') == len(STAGES)
    assert (
        json.loads(before)["stages"]
        == json.loads((pipeline_run.out / "run.json").read_text())["stages"]
    )
    assert urls == [(pipeline_run.out / "report.html").resolve().as_uri()]
    assert ("open " + urls[0] + " yourself" in result.stdout) is not opened


def _copy_run(pipeline_run, tmp_path):
    """A copy of the finished run to change without touching the shared one."""
    import shutil

    copy = tmp_path / "run copy"  # a space in the path, on purpose
    shutil.copytree(pipeline_run.out, copy, symlinks=True)
    return copy


def test_findings_about_another_file_are_not_shown(pipeline_run, tmp_path):
    """A doctor.json whose file is not the export's int8 file now is left out of the report."""
    from edgecnn.pipeline.report import write_report

    run = _copy_run(pipeline_run, tmp_path)
    stale = {"file": str(run / "exports" / "model_int8.tflite"), "file_sha256": "0" * 64,
             "agreement": 0.5, "test": [], "calibration": [], "onnx_file": None, "onnx": [],
             "sensitivity": [], "sweep": [], "culprit": "conv1", "finding": "stale findings",
             "seconds": 1.0}  # fmt: skip
    (run / "doctor.json").write_text(json.dumps(stale))
    page = write_report(run).read_text()
    assert "stale findings" not in page and "no diagnosis was needed" in page


def test_a_stage_run_again_runs_every_later_stage_again(pipeline_run, tmp_path):
    run = _copy_run(pipeline_run, tmp_path)
    (run / "bench.json").unlink()
    report_before = (run / "report.html").stat().st_mtime_ns
    result = invoke("run", "--resume", "--out", run)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("done earlier, kept") == 3  # train, evaluate, export
    assert "[4/5] bench\n" in result.stdout and "[5/5] report\n" in result.stdout
    assert (run / "report.html").stat().st_mtime_ns != report_before


def test_ctrl_c_in_a_stage_is_one_line_exit_130_and_resumable(pipeline_run, tmp_path, monkeypatch):
    from edgecnn.pipeline import stages

    run = _copy_run(pipeline_run, tmp_path)
    (run / "report.html").unlink()

    def interrupted(ctx):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setitem(stages.STAGE_FUNCTIONS, "report", interrupted)
        result = invoke("run", "--resume", "--out", run)
    assert_one_line_error(result, match="stage 'report' was interrupted", code=130)
    # The command it suggests is quoted for a shell, space and all.
    assert f"continue with: edgecnn run --resume --out '{run}'" in result.stderr
    assert json.loads((run / "run.json").read_text())["stages"]["report"]["status"] == "failed"
    assert not (run / "report.html").exists()
    command = shlex.split(result.stderr.split("continue with: ", 1)[1])
    assert invoke(*command[1:]).exit_code == 0
    assert (run / "report.html").is_file()


def test_a_rejected_file_is_reported_and_the_run_exits_1(pipeline_run, tmp_path):
    run = _copy_run(pipeline_run, tmp_path)
    report_path = run / "exports" / "export_report.json"
    report = json.loads(report_path.read_text())
    row = next(f for f in report["files"] if f["file"] == "model_int8.tflite")
    row.update(passed=False, failures=["agreement 99.00% < 99.50%"])
    report["passed"] = False
    report_path.write_text(json.dumps(report))
    (run / "bench.json").unlink()  # bench and report run again, without the rejected file
    result = invoke("run", "--resume", "--out", run)
    assert_one_line_error(result, match="model_int8.tflite failed the verification gate", code=1)
    bench = json.loads((run / "bench.json").read_text())
    assert "model_int8.tflite" not in [r["model"] for r in bench["results"]]
    page = (run / "report.html").read_text()
    assert "FAIL</span> agreement 99.00% &lt; 99.50%" in page
    assert "Rejected by the verification gate" in page  # in the summary, not only the table
    assert "try: " in result.stderr and "--remedy auto" in result.stderr
    # A failed int8 file gets the doctor's findings: doctor.json, and a section with a chart.
    diagnosis = json.loads((run / "doctor.json").read_text())
    assert diagnosis["file"].endswith("model_int8.tflite") and diagnosis["sensitivity"]
    assert (run / "doctor_chart.png").is_file()
    doctor = page.split('id="doctor"', 1)[1].split("</section>", 1)[0]
    assert "Top-1 agreement with Keras:" in doctor and "median channel dB" in doctor
    assert "SQNR per quantized tensor" in doctor and "--remedy auto" in doctor
    # The rejected file is recommended nowhere, for no target.
    recommendations = result.stdout.split("Recommended files, per target:")[1]
    assert "model_int8.tflite" not in recommendations


def test_report_without_int8_files(pipeline_run, tmp_path):
    from edgecnn.pipeline.report import write_report

    run = _copy_run(pipeline_run, tmp_path)
    for name, key in (("exports/export_report.json", "files"), ("bench.json", "results")):
        data = json.loads((run / name).read_text())
        data[key] = [
            r for r in data[key]
            if "int8" not in (f := r.get("file") or r["model"]) and f not in MCU_FOLDERS
        ]  # fmt: skip
        (run / name).write_text(json.dumps(data))
    page = write_report(run).read_text()
    assert "No int8 file was kept in this run." in page
    # This machine's pick among what is left: the fastest measured here (ties: smaller).
    bench = json.loads((run / "bench.json").read_text())["results"]
    fastest = min(bench, key=lambda r: r["latency_us"]["p50"])["model"]
    near = [r for r in bench if r["latency_us"]["p50"] <= 1.1 * min(
        b["latency_us"]["p50"] for b in bench)]  # fmt: skip
    assert fastest and near
    picked = page.split("Recommended here", 1)[1][:200]
    assert any(r["model"] in picked for r in near)


@pytest.mark.parametrize(
    "content",
    ['{"options": [], "stages": {}}', '{"options": {"foo": 1}, "stages": {}}', '{"options": {}}'],
)
def test_resume_from_a_damaged_run_json_is_one_line(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    assert_one_line_error(invoke("run", "--resume", "--out", tmp_path), match="unreadable")


def test_the_printed_command_runs_from_a_shell_without_the_venv(monkeypatch, tmp_path):
    """After tools/bootstrap.sh, .venv/bin is not on PATH: the summary names the path."""
    from edgecnn.pipeline.summary import edgecnn_command

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    command = edgecnn_command()
    assert command != "edgecnn" and Path(command).name == "edgecnn"
    assert (tmp_path / command).resolve().is_file()


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx", "weights.npz", "c"])
def test_evaluate_an_exported_file_matches_its_export_gate(pipeline_run, tmp_path, name):
    """edgecnn evaluate on the file a user ships: the gate's accuracy and agreement."""
    exports = pipeline_run.out / "exports"
    report = json.loads((exports / "export_report.json").read_text())
    row = next(f for f in report["files"] if f["file"].rstrip("/") == name)
    result = invoke("evaluate", exports / name, "--out", tmp_path, "--backend", row["backend"])
    assert result.exit_code == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(row["accuracy"], abs=1e-9)
    # The gate measures agreement on the test images first (10,000 for Fashion-MNIST).
    assert metrics["keras_agreement"] == pytest.approx(row["agreement"], abs=1e-9)
    assert len(metrics["differs_from_keras"]) == round((1 - row["agreement"]) * 10_000)
    assert {p.name for p in tmp_path.iterdir()} == {
        "metrics.json", "confusion_matrix.png", "errors.png", "differs_from_keras.png",
        "reliability.png",
    }  # fmt: skip
    assert "Top-1 agreement with model.keras" in result.stdout


def test_evaluate_names_what_it_cannot_run(pipeline_run, tmp_path):
    assert_one_line_error(invoke("evaluate", pipeline_run.out / "exports" / "tflm"),
                          match="TensorFlow Lite Micro bundle")  # fmt: skip
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a model")
    assert_one_line_error(invoke("evaluate", bad))


def test_every_exported_file_carries_a_reference_that_verify_passes(pipeline_run):
    exports = pipeline_run.out / "exports"
    for name in EXPORTED:
        result = invoke("verify", exports / name, "--json")
        assert result.exit_code == 0, (name, result.stdout)
        r = json.loads(result.stdout)
        assert r["passed"] and r["agreement_with_export"] == 1.0, name
        assert r["images"] == 500


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"options": {"epochs": "abc"}}, "options: epochs must be a whole number of at least 1"),
        ({"options": {"epochs": 1.5}}, "options: epochs must be a whole number of at least 1"),
        ({"options": {"epochs": 0}}, "options: epochs must be a whole number of at least 1"),
        ({"options": {"seed": 2**80}}, "options: seed must be a whole number from 0 to 4294967295"),
        ({"options": {"seed": -1}}, "options: seed must be a whole number from 0 to"),
        ({"options": {"bench_runs": -1}}, "options: bench_runs must be a whole number of at least"),
        ({"options": {"bench_runs": "many"}}, "options: bench_runs must be a whole number"),
        ({"options": {"bench_runs": True}}, "options: bench_runs must be a whole number"),
        ({"options": {"image_size": 1000}}, "options: image_size must be a whole number from 16"),
        ({"options": {"channels": 2}}, "options: channels must be 1 or 3, got 2"),
        ({"options": {"int8": "yes"}}, "options: int8 must be true or false, got 'yes'"),
        ({"options": {"dataset": ["fashion"]}}, "options: dataset must be one of fashion"),
        ({"options": {"data": 7}}, "options: data must be a path, got 7"),
        ({"options": {"classes": ["a", "b"]}}, "options: classes must be class names separated"),
        ({"options": {"verify_with": None}}, "options: verify_with must be backend names"),
        ({"options": {"train_subset": 0}}, "options: train_subset must be a whole number"),
        ({"options": {"colour": 1}}, "options: options has an unknown field 'colour'"),
        ({"options": None}, "options: options must be an object"),
        ({"stages": {"train": None}}, "stages.train is None, not an object"),
        ({"stages": {"train": {"status": "finished"}}}, "stages.train.status must be one of"),
        ({"stages": {"train": {"status": "done", "seconds": "abc"}}}, "stages.train.seconds"),
        ({"stages": {"train": {"status": "done", "seconds": -3}}}, "stages.train.seconds"),
        ({"stages": {"train": {"status": "done", "error": 5}}}, "stages.train.error is 5"),
        ({"stages": {"deploy": {"status": "done"}}}, "stages has an unknown stage 'deploy'"),
        ({"stages": []}, "stages is [], not an object"),
        ({"data_dir": 5}, "data_dir is 5, not text"),
    ],
)
def test_a_hand_edited_run_json_is_refused_naming_the_field(tmp_path, change, match):
    state = {"name": tmp_path.name, "options": {}, "stages": {}, "data_dir": None}
    for key, value in change.items():
        state[key] = {**state[key], **value} if isinstance(value, dict) else value
    (tmp_path / "run.json").write_text(json.dumps(state))
    result = invoke("run", "--resume", "--out", tmp_path)
    assert_one_line_error(result, match=match)
    assert "unreadable: " in result.stderr and "unexpected" not in result.stderr


@pytest.mark.parametrize("text", ['{"options": {"epochs": NaN}, "stages": {}}', "[1]", "[" * 10**5])
def test_a_run_json_that_is_not_strict_json_is_refused(tmp_path, text):
    (tmp_path / "run.json").write_text(text)
    assert_one_line_error(invoke("run", "--resume", "--out", tmp_path), match="unreadable")


@pytest.mark.slow
def test_an_own_data_run_with_mathtext_class_names_finishes_and_stays_quiet(tmp_path, test_images):
    """Own pictures whose class names matplotlib would read as maths, through every stage.

    A class named "$^{$ bad" used to fail the evaluate stage on every --resume; and two
    long TensorFlow "retracing" warnings reached stderr, as each stage called
    ``model.predict`` on a freshly loaded model.
    """
    import subprocess
    import sys

    names = {0: "$^{$ bad", 1: r"\frac{x", 7: "a_b^c $"}
    data = tmp_path / "my data"
    for i in np.flatnonzero(np.isin(test_images.y[:1500], list(names))):
        folder = data / names[int(test_images.y[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_images.x[i]).save(folder / f"{i:05d}.png")
    out = tmp_path / "run"
    args = ["run", "--data", data, "--epochs", 2, "--out", out, "--no-mcu", "--bench-runs", 10]
    done = subprocess.run([sys.executable, "-m", "edgecnn", *map(str, args)],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "retracing" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class_accuracy"]) == set(names.values())
    assert "$^{$ bad" in done.stdout  # the text confusion matrix
    for name in FIGURES:
        with Image.open(out / name) as im:
            im.verify()


def _exported_run(folder, rows, stages=("train", "evaluate", "export")):
    """A hand-made run whose export is done and whose bench and report are still to run."""
    from report_helpers import make_run

    from edgecnn.export.formats import FORMATS

    make_run(folder, files=rows)
    (folder / "model.keras").write_bytes(b"not trained here")
    Image.new("L", (28, 28), 128).save(folder / "sample.png")
    for row in rows:
        for name in FORMATS[row.format].contents:
            (folder / "exports" / row.file / name).write_text("made by hand")
    state = {"name": folder.name, "options": {}, "data_dir": None,
             "stages": {s: {"status": "done", "seconds": 1.0} for s in stages}}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(state))
    (folder / "bench.json").unlink()
    return folder


def test_resume_never_loads_a_library_the_run_folder_holds(tmp_path):
    """A run folder is plain files: a ``c`` row, a library and a sidecar recording its own
    SHA-256 must not get it loaded by ``--resume``, which was not asked to load code."""
    from report_helpers import exported_file

    from edgecnn.export.mcu import toolchain

    cc = toolchain.host_compiler()
    assert cc is not None, "the tests need a C compiler"
    marker = tmp_path / "marker"
    source = tmp_path / "foreign.c"
    source.write_text(
        "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {\n"
        f'    FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n'
    )
    row = exported_file("c/", "c", "int8", backend="c")  # "c": taken from no file
    run = _exported_run(tmp_path / "run", [row])
    library = run / "exports" / "c" / "libedgecnn_model.so"
    toolchain.run([cc, "-shared", "-fPIC", str(source), "-o", str(library)], "compiling")
    digest = hashlib.sha256(library.read_bytes()).hexdigest()
    sealed = TINY / "full_integer" / "model_int8.tflite.json"  # metadata as an export's
    sidecar = {**json.loads(sealed.read_text()), "file": {"name": library.name, "sha256": digest}}
    library.with_name(library.name + ".json").write_text(json.dumps(sidecar))
    result = invoke("run", "--resume", "--out", run)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert not marker.exists()
    assert "c/: not benchmarked: a native library (code) is loaded only right after this " \
           "run built it; measure it with `edgecnn bench" in result.stdout  # fmt: skip
    bench = json.loads((run / "bench.json").read_text())
    assert bench["results"] == [] and [s["model"] for s in bench["skipped"]] == ["c/"]
    assert (run / "report.html").is_file()  # the report renders without c/'s latency
    state = json.loads((run / "run.json").read_text())
    assert [state["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)


def _file(document, **changes):
    """``document`` with its first file's record changed (None: the key dropped)."""
    row = {**document["files"][0], **changes}
    document["files"][0] = {k: v for k, v in row.items() if v is not None}
    return document


@pytest.mark.parametrize(
    ("broken", "match"),
    [
        (lambda d: [], "the report is [], not an object"),
        (lambda d: {**d, "files": None}, "files is missing"),
        (lambda d: {**d, "files": {"file": "model_int8.tflite"}}, "files is {'file'"),
        (lambda d: {**d, "files": ["model_int8.tflite"]},
         "files[0] is 'model_int8.tflite', not an object"),
        (lambda d: {**d, "schema": 3}, "has schema 3, written by a newer edgecnn"),
        (lambda d: {**d, "labels": "a,b"}, "labels is 'a,b', not a list of text"),
        (lambda d: _file(d, file=None), "files[0].file is missing"),
        (lambda d: _file(d, format=None), "files[0].format is missing"),
        (lambda d: _file(d, passed=None), "files[0].passed is missing"),
        (lambda d: _file(d, format="keras"), "files[0].format is 'keras', not one of tflite"),
        (lambda d: _file(d, passed="yes"), "files[0].passed is 'yes', not true or false"),
        (lambda d: _file(d, file="../model.tflite"),
         "files[0].file is '../model.tflite', not a plain file name"),
        (lambda d: _file(d, file="/etc/passwd", passed=False),
         "files[0].file is '/etc/passwd', not a plain file name"),
        (lambda d: _file(d, file="..", passed=False), "files[0].file is"),
        (lambda d: _file(d, file="../c/", format="c"),
         "files[0].file is '../c/', not a plain folder name ending in /"),
        (lambda d: _file(d, file="c", format="c"), "not a plain folder name"),
        (lambda d: _file(d, passed=False, failures="x"),
         "files[0].failures is 'x', not a list of text"),
    ],
)  # fmt: skip
def test_an_export_report_no_export_writes_is_refused_naming_the_field(tmp_path, broken, match):
    from report_helpers import exported_file
    from shared import export_report_document

    from edgecnn.export.report_file import ReportError, load_report

    row = exported_file("model_int8.tflite", "tflite", "int8")
    report = broken(export_report_document([row], "0" * 64))
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "export_report.json").write_text(json.dumps(report))
    with pytest.raises(ReportError) as refused:
        load_report(exports)
    assert match in str(refused.value)
    # edgecnn run --resume: the bench stage reads it, one line and exit 2, no traceback.
    run = _exported_run(tmp_path / "run", [row])
    (run / "exports" / "export_report.json").write_text(json.dumps(report))
    assert_one_line_error(invoke("run", "--resume", "--out", run), match=match)


@pytest.mark.parametrize("text", ["{not json", '{"files": [], "seconds": NaN}', "[" * 10**5, ""])
def test_an_export_report_that_is_not_strict_json_is_one_line(tmp_path, text):
    from edgecnn.export.report_file import ReportError, load_report

    (tmp_path / "export_report.json").write_text(text)
    with pytest.raises(ReportError, match="export_report.json"):
        load_report(tmp_path)


def test_a_huge_export_report_is_refused_before_it_is_read(tmp_path):
    from edgecnn.export.report_file import MAX_REPORT_BYTES, ReportError, load_report

    with open(tmp_path / "export_report.json", "wb") as f:
        f.truncate(MAX_REPORT_BYTES + 1)
    with pytest.raises(ReportError, match="at most 16.0 MiB"):
        load_report(tmp_path)


def test_report_confidence_table_holds_the_fitted_and_measured_numbers(pipeline_run):
    """Each row of the Confidence table: the temperature and validation ECE its metadata
    stores, the test figures its evaluation measured."""
    from edgecnn.runtime.metadata import read_sidecar

    page = (pipeline_run.out / "report.html").read_text()
    section = page[page.index('<section id="confidence">') :]
    section = section[: section.index("</section>")]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", section, re.S)
        )
        if cells
    }

    def pct(x):
        return f"{100 * x:.2f}%"

    metrics = json.loads((pipeline_run.out / "metrics.json").read_text())["calibration"]
    keras = rows["model.keras (Keras)"]
    fitted = metrics["confidence"]
    assert keras[:4] == [f"{fitted['temperature']:.3f}", pct(fitted["ece_before"]),
                         pct(fitted["ece_after"]), pct(metrics["ece_before"])]  # fmt: skip
    assert keras[4:] == [pct(metrics["ece_after"]), f"{fitted['reject_below']:.3f}",
                         pct(metrics["rejected"]), pct(metrics["accepted_accuracy"])]  # fmt: skip
    exports = pipeline_run.out / "exports"
    int8 = rows["model_int8.tflite"]
    stored = read_sidecar(exports / "model_int8.tflite").metadata.confidence
    measured = json.loads((exports / "model_int8.tflite.evaluation" / "metrics.json").read_text())
    assert int8[:3] == [f"{stored.temperature:.3f}", pct(stored.ece_before), pct(stored.ece_after)]
    assert int8[3:5] == [pct(measured["calibration"]["ece_before"]),
                         pct(measured["calibration"]["ece_after"])]  # fmt: skip
    assert int8[5] == f"{stored.reject_below:.3f}"
