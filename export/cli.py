"""``edgecnn export``. TensorFlow is imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgecnn.export.config import DEFAULT_FORMATS, FORMATS, ExportConfig, backend_names

if TYPE_CHECKING:
    from edgecnn.export.records import ExportedFile

_DEFAULTS = ExportConfig()


def export_command(
    target: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL_OR_RUN_DIR", help="A run directory (with model.keras) or a .keras file."
        ),
    ],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write full-integer int8 TFLite and ONNX files.")
    ] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write a float16 TFLite file.")] = False,
    dynamic: Annotated[
        bool,
        typer.Option("--dynamic", help="Also write a dynamic-range TFLite file (int8 weights)."),
    ] = False,
    formats: Annotated[
        str,
        typer.Option(
            help="Comma-separated subset of tflite,onnx,c,tflm, or all. c (a C99 library) "
            "and tflm (a TensorFlow Lite Micro bundle) are made from the int8 .tflite."
        ),
    ] = ",".join(DEFAULT_FORMATS),
    calib_samples: Annotated[
        int, typer.Option(help="Training images used to calibrate int8.")
    ] = _DEFAULTS.calib_samples,
    full_integer: Annotated[
        bool,
        typer.Option(
            "--full-integer",
            help="Make every operator of the int8 .tflite int8, the last layer and softmax "
            "too, for integer-only accelerators (Edge TPU, NNAPI, Ethos-U). By default they "
            "run in float32: better agreement, and probabilities whose runners-up mean "
            "something.",
        ),
    ] = False,
    calib_method: Annotated[
        str, typer.Option(help="ONNX int8 calibration: minmax, entropy or percentile.")
    ] = _DEFAULTS.calib_method,
    seed: Annotated[int, typer.Option(help="Seed for drawing calibration images.")] = 0,
    remedy: Annotated[
        str,
        typer.Option(
            help="For int8 files that fail their gate: auto (plain int8, then each remedy "
            "until one passes), or one of calibration (more images), equalize (cross-layer "
            "equalization), bias-correction, float-layer (the most sensitive layer in "
            "float), int16 (16-bit activations). Implies --int8. See 'edgecnn doctor'."
        ),
    ] = "none",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder, replaced whole by the new export: empty, new, or an earlier "
            "export's. [default: exports/ in the run directory]"
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder with the dataset's IDX files.")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Your own pictures (a folder of class folders, or an .npz) to calibrate "
            "and verify on. [default: the data the run trained on]",
        ),
    ] = None,
    max_accuracy_drop: Annotated[
        float | None,
        typer.Option(
            help="Reject a file whose accuracy drops more than this many points "
            "(overrides every format's gate)."
        ),
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            help="Reject a file whose top-1 agreement with Keras is below this "
            "fraction, e.g. 0.995 (overrides every format's gate)."
        ),
    ] = None,
    verify_with: Annotated[
        str,
        typer.Option(
            help="Also verify each file on these backends (comma-separated, e.g. "
            "openvino,litert-builtin), with the same gate; a file that fails on one is "
            "rejected. [default: only the backend the runtime picks]"
        ),
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
) -> None:
    """Convert to TFLite and ONNX; keep each file only if it matches the Keras model.

    Every file is run through edgecnn.runtime on the test images (Fashion-MNIST's 10,000)
    and compared with Keras. A file that fails its gate is moved aside as *.rejected and
    the command exits with 1. The output folder is replaced whole when all is done, so
    it must hold nothing but an earlier export; a killed export leaves the earlier one.
    """
    import io

    from edgecnn import _json
    from edgecnn._atomic import ensure_writable_dir
    from edgecnn.export.measure import check_runtimes
    from edgecnn.export.staging import check_replaceable
    from edgecnn.trainer.model_source import resolve_model

    config = ExportConfig(
        formats=_formats(formats),
        int8=int8 or remedy != "none",
        fp16=fp16,
        dynamic=dynamic,
        calib_samples=calib_samples,
        full_integer=full_integer,
        calib_method=calib_method,
        seed=seed,
        max_accuracy_drop=max_accuracy_drop,
        min_agreement=min_agreement,
        verify_with=backend_names(verify_with),
        remedy=remedy,
    )
    check_runtimes(config.verify_with)  # a backend not installed stops before any work
    source = resolve_model(target)  # bad paths are answered before TensorFlow's slow import
    if out is not None and out.exists():
        ensure_writable_dir(out)
        check_replaceable(out)  # an export replaces the folder whole: said before TensorFlow
    from edgecnn.export.exporter import export_model

    def progress(record: ExportedFile) -> None:
        if not as_json:
            status = "ok" if record.passed else "REJECTED"
            elsewhere = "".join(
                f", {name} {100 * r.scores.agreement:.2f}%" if r.scores else f", {name} FAILED"
                for name, r in record.runtimes.items()
            )
            agreement = 100 * record.agreement
            typer.echo(f"  {record.file:22s} agreement {agreement:6.2f}%{elsewhere}  {status}")
            if record.remedy is not None:
                typer.echo(f"    remedy {record.remedy.summary()}")

    if not as_json:
        typer.echo(f"Exporting {source.model_path} ...")
    report = export_model(
        target,
        config,
        out_dir=out,
        data_dir=data_dir,
        data=data,
        on_file=progress,
        stream=io.StringIO() if as_json else None,
    )
    if as_json:
        typer.echo(_json.dumps(report.to_dict()))
    errors = [s for s in report.skipped if s.error]
    if errors:  # the model cannot be written in a format asked for: say which and why
        from edgecnn.errors import EdgecnnError

        raise EdgecnnError(f"{errors[0].format}: {errors[0].reason}").with_exit_code(2)
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``edgecnn export`` and ``edgecnn doctor`` to the app."""
    from edgecnn.export.doctor import cli as doctor_cli

    app.command("export")(export_command)
    doctor_cli.register(app)


def _formats(text: str) -> tuple[str, ...]:
    """``--formats``: names separated by commas; ``all`` for every format."""
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    return FORMATS if names == ("all",) else names
