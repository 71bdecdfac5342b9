"""run.json, bench.json and split.json read as typed records: today's layout (schema 1,
no ``schema`` key) still reads, a newer schema is refused plainly, a bad field is named."""

from __future__ import annotations

import json

import pytest
from report_helpers import bench_result
from shared import TINY

from edgecnn.export.records import ExportReport
from edgecnn.pipeline.bench_record import BenchRecord, read_bench
from edgecnn.pipeline.state import RunOptions, RunState, StageRecord, load_state
from edgecnn.records import Fields, RecordError

BENCH_V1 = {"batch_sizes": [1, 32], "cpu_count": 4, "skipped": [],
            "results": [bench_result("model_int8.tflite", 50.0)]}  # fmt: skip
RUN_V1 = {"edgecnn_version": "0.9", "name": "r", "created": "2026-01-01T00:00:00+00:00",
          "options": {"epochs": 2}, "data_dir": None,
          "stages": {"train": {"status": "done", "seconds": 3.5, "started": "x",
                               "finished": "y", "error": None}},
          "environment": {"machine": {"cpu": "c", "cores": 2},
                          "versions": {"NumPy": "2"}}}  # fmt: skip


def test_the_tiny_schema_1_export_report_still_reads():
    report = ExportReport.from_dict(json.loads((TINY / "export_report.json").read_text()))
    assert report.schema == 1 and report.files


def test_a_schema_1_bench_record_reads_and_round_trips(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(BENCH_V1))
    record = read_bench(tmp_path / "bench.json")
    assert record.schema == 1 and record.latency_by_file() == {"model_int8.tflite": 50.0}
    assert record.results[0].throughput[1].images_per_s == pytest.approx(2e4)
    again = BenchRecord.from_fields(Fields(json.loads(json.dumps(record.to_dict()))))
    assert again == record


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schema": 2}, "the bench record has schema 2, written by a newer edgecnn"),
        ({"results": [{**bench_result("m.tflite", 5.0), "model": 7}]},
         "results[0].model is 7, not text"),
        ({"results": [{**bench_result("m.tflite", 5.0), "latency_us": {"p95": 1.0}}]},
         "results[0].latency_us.p50 is missing"),
        ({"batch_sizes": [0.5]}, "batch_sizes is [0.5], not a list of batch sizes"),
    ],
)  # fmt: skip
def test_a_bench_record_names_the_field_it_refuses(tmp_path, change, match):
    (tmp_path / "bench.json").write_text(json.dumps({**BENCH_V1, **change}))
    with pytest.raises(RecordError, match=match.replace("[", r"\[").replace("]", r"\]")):
        read_bench(tmp_path / "bench.json")


def test_a_schema_1_run_json_reads_and_round_trips(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(RUN_V1))
    state = load_state(tmp_path)
    assert state.schema == 1 and state.options == RunOptions(epochs=2, outliers=0.0)
    assert state.stage("train") == StageRecord("done", 3.5, "x", "y")
    assert state.environment.cores == 2 and state.environment.versions == {"NumPy": "2"}
    assert RunState.from_fields(Fields(json.loads(json.dumps(state.to_dict())))) == state


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schema": 2}, "the run record has schema 2, written by a newer edgecnn"),
        ({"stages": {"train": {"status": "done", "seconds": -1}}}, "stages.train.seconds"),
        ({"environment": {"machine": {"cores": "many"}}}, "environment.machine.cores is"),
    ],
)
def test_a_run_json_names_the_field_it_refuses(tmp_path, change, match):
    from edgecnn.errors import ConfigError

    (tmp_path / "run.json").write_text(json.dumps({**RUN_V1, **change}))
    with pytest.raises(ConfigError, match=match):
        load_state(tmp_path)


def test_a_split_record_of_a_newer_schema_is_refused():
    from edgecnn.trainer.splits import check_record

    with pytest.raises(ValueError, match="the split record has schema 2, written by a newer"):
        check_record({"schema": 2, "kind": "npz"})


def test_old_reports_keep_what_they_recorded_and_bad_gates_are_named(tmp_path):
    """A schema-1 --verify-with row had delta_pp and no reference accuracy; a report with a
    gate of another type is named in one line, by file and field."""
    import json

    from shared import TINY

    from edgecnn.export.config import ExportConfig
    from edgecnn.export.records import ExportReport
    from edgecnn.records import RecordError, read_record

    document = json.loads((TINY / "export_report.json").read_text())
    row = document["files"][0]
    row["runtimes"] = {
        "openvino": {
            "accuracy": 0.78,
            "delta_pp": -0.51,
            "agreement": 0.99,
            "max_prob_diff": 0.01,
            "latency_us": 9.0,
            "failures": [],
        }
    }
    checked = ExportReport.from_dict(document).files[0].runtimes["openvino"].scores
    assert abs(checked.delta_pp - -0.51) < 1e-9
    row["gate"] = {"min_agreement": "x"}
    path = tmp_path / "export_report.json"
    path.write_text(json.dumps(document))
    try:
        read_record(path, ExportReport.from_fields, "an export report")
    except RecordError as e:
        assert str(e).startswith(f"{path}: files[0].gate.min_agreement is 'x'"), e
    else:
        raise AssertionError("a bad gate was read")
    # An export of the C library alone still asks for --int8 and brings the int8 .tflite.
    assert ("tflite", "int8") in ExportConfig(formats=("c",), int8=True).targets()


def test_run_options_pass_outlier_exposure_to_training(fashion_dir):
    from edgecnn.errors import ConfigError
    from edgecnn.trainer.config import DEFAULT_OUTLIERS

    assert RunOptions().train_config(fashion_dir).outliers == DEFAULT_OUTLIERS > 0
    assert RunOptions(outliers=0).train_config(fashion_dir).outliers == 0
    assert RunOptions.from_dict({"outliers": 0.5}).train_config(fashion_dir).outliers == 0.5
    # A run recorded before outlier exposure resumes without it.
    assert RunOptions.from_dict({"epochs": 2}).train_config(fashion_dir).outliers == 0
    with pytest.raises(ConfigError, match="outliers"):
        RunOptions.from_dict({"outliers": "many"})
    with pytest.raises(ConfigError, match="outliers must be in 0..4"):
        RunOptions(outliers=9).train_config(fashion_dir)
