"""``export_report.json`` read back: bounded, strict, and checked against the folder."""

from __future__ import annotations

from pathlib import Path

from edgecnn import _json
from edgecnn._files import MiB, read_regular_file
from edgecnn.errors import DataError
from edgecnn.export.records import ExportReport
from edgecnn.export.staging import recover
from edgecnn.records import Fields, RecordError
from edgecnn.run_folder import EXPORT_REPORT_FILE
from edgecnn.runtime.errors import SIDECAR_MAX_BYTES
from edgecnn.runtime.metadata import sidecar_path

#: What ``export_report.json`` may weigh when read back (an export writes a few KiB).
MAX_REPORT_BYTES = 16 * MiB


class ReportError(DataError, ValueError):
    """``export_report.json`` is missing, damaged or not one an export writes.

    A ValueError too, as an unreadable JSON document was: ``edgecnn run --resume`` then
    takes the export stage for not done rather than trusting the folder.
    """


class MissingReport(ReportError, FileNotFoundError):
    """There is no ``export_report.json``: a FileNotFoundError too, as it always was."""


def load_report(out_dir: Path) -> ExportReport:
    """Read ``export_report.json`` back, checked, once :func:`check_sources` trusts the folder.

    A folder missing because an export was killed between its two renames is put back
    first (:func:`edgecnn.export.staging.recover`). The report is a plain file that any
    hand may have edited, so it is read bounded and strict into an
    :class:`~edgecnn.export.records.ExportReport`, whose reader names the field it rejects.

    Raises:
        MissingReport: there is no report.
        ReportError: unreadable, too large, not strict JSON, a field no export writes
            (the message names it), or a newer schema than this edgecnn reads.
        DataError: a file kept there came from another model than the report says.
    """
    recover(out_dir)
    path = out_dir / EXPORT_REPORT_FILE
    if not path.exists():
        raise MissingReport(f"{path} does not exist: nothing was exported there")
    raw = read_regular_file(path, MAX_REPORT_BYTES, ReportError, "an export report")
    try:
        document = _json.loads(raw)
    except ValueError as e:
        raise ReportError(f"{path}: not readable JSON ({str(e)[:200]}); export again") from None
    try:
        report = ExportReport.from_fields(Fields(document, "the report"))
    except (RecordError, ValueError) as e:
        raise ReportError(f"{path}: {e}; not a report an export writes, export again") from None
    check_sources(out_dir, report)
    return report


def check_sources(out_dir: Path, report: ExportReport) -> None:
    """Every file the report keeps must record the report's source model in its sidecar.

    An export replaces its folder whole, so this holds unless files were copied in by
    hand or an older edgecnn was killed mid-export; then the report describes files it
    did not measure, and nothing should be read, benchmarked or shipped from there.

    Raises:
        DataError: a kept file's sidecar is missing or names another source model.
    """
    for record in report.kept:
        if record.is_folder:
            continue  # folder formats carry no sidecar
        try:
            raw = read_regular_file(sidecar_path(out_dir / record.file), SIDECAR_MAX_BYTES,
                                    DataError, "a metadata file")  # fmt: skip
            recorded = _json.loads(raw).get("source_sha256")
        except (DataError, ValueError, AttributeError):
            recorded = "missing"
        if recorded != report.source_sha256:
            raise DataError(
                f"{out_dir}: {record.file} was not exported from the model "
                f"{EXPORT_REPORT_FILE} describes (its sidecar records another source model, "
                "or none); the folder mixes two exports: export again"
            )
