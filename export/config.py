"""Export configuration: which files to write and what each must prove before it is kept."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgecnn.errors import ConfigError
from edgecnn.export import formats as registry
from edgecnn.export.auto import INTEGER_ONLY, REMEDY_CHOICES
from edgecnn.records import Fields, JSONObject
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.gate import GATES, Gate

#: Formats ``--formats`` chooses from; the others (weights.npz) are always written.
FORMATS = tuple(name for name, fmt in registry.FORMATS.items() if fmt.selectable)
#: What ``edgecnn export`` writes unless told: the files apps load.
DEFAULT_FORMATS = ("tflite", "onnx")
#: Generated from the int8 .tflite: microcontroller targets.
FOLDER_FORMATS = tuple(name for name, fmt in registry.FORMATS.items() if fmt.folder)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
#: The precisions beyond float32, with the flag that asks for each.
PRECISION_FLAGS = {"float16": "--fp16", "dynamic": "--dynamic", "int8": "--int8"}


@dataclass(frozen=True)
class ExportConfig:
    """Which files ``edgecnn export`` writes, how int8 is calibrated, and gate overrides."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    int8: bool = False
    fp16: bool = False
    dynamic: bool = False
    calib_samples: int = 500
    #: int8 ``.tflite`` with every operator in int8 (the last layer and softmax too).
    full_integer: bool = False
    calib_method: str = "minmax"
    seed: int = 0
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    #: Backends that must also pass each file they run (beyond the one ``auto`` picks).
    verify_with: tuple[str, ...] = ()
    #: What to do for an int8 file that fails its gate (edgecnn.export.auto).
    remedy: str = "none"

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ConfigError(
                f"--formats takes a comma-separated subset of "
                f"{','.join(FORMATS)} (or all); got {','.join(self.formats) or 'nothing'}"
            )
        for precision in self.precisions()[1:]:
            offered = [n for n, f in registry.FORMATS.items() if precision in f.precisions]
            # A folder format (the C library) offers int8 and brings the int8 .tflite.
            if not any(f in offered for f in self.formats):
                raise ConfigError(
                    f"{PRECISION_FLAGS[precision]} writes {precision} files, which only "
                    f"{' or '.join(o for o in offered if registry.FORMATS[o].selectable)} "
                    "can hold; add one to --formats"
                )
        if self.full_integer and ("tflite", "int8") not in self.targets():
            raise ConfigError("--full-integer changes the int8 .tflite file; add --int8")
        if self.remedy not in REMEDY_CHOICES:
            raise ConfigError(f"--remedy must be one of {', '.join(REMEDY_CHOICES)}")
        if self.remedy != "none" and not self.int8:
            raise ConfigError("--remedy changes the int8 files; add --int8")
        if self.full_integer and self.remedy not in ("none", "auto", *INTEGER_ONLY):
            raise ConfigError(
                f"--remedy {self.remedy} keeps operators out of int8, which --full-integer "
                f"forbids; with it, choose from {', '.join(INTEGER_ONLY)} (or auto)"
            )
        if self.calib_samples < 1:
            raise ConfigError(f"--calib-samples must be at least 1, got {self.calib_samples}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ConfigError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        # Written so that NaN fails: a NaN threshold would make the gate unfailable.
        drop = self.max_accuracy_drop
        if drop is not None and not (0 <= drop <= 100):
            raise ConfigError(f"--max-accuracy-drop must be 0..100 percentage points, got {drop}")
        if self.min_agreement is not None and not (0 <= self.min_agreement <= 1.01):
            raise ConfigError(f"--min-agreement is a fraction in [0, 1], got {self.min_agreement}")
        self._check_verify_with()

    def _check_verify_with(self) -> None:
        """Every ``verify_with`` name must be a backend that runs a file of this export."""
        unknown = [n for n in self.verify_with if n not in BACKENDS]
        if unknown:
            raise ConfigError(
                f"--verify-with takes backend names from {', '.join(BACKENDS)}; "
                f"got {unknown[0]!r:.40}"
            )
        written = {registry.FORMATS[f].suffix for f, _ in self.targets()}
        for name in self.verify_with:
            if not written & set(BACKENDS[name].suffixes):
                raise ConfigError(
                    f"--verify-with {name}: the {name} backend runs "
                    f"{', '.join(BACKENDS[name].suffixes)} files, and this export writes none"
                )

    def precisions(self) -> tuple[str, ...]:
        """The precisions asked for: float32 always, then those the flags ask for."""
        asked = {"float16": self.fp16, "dynamic": self.dynamic, "int8": self.int8}
        return ("float32", *(p for p in PRECISION_FLAGS if asked[p]))

    def file_formats(self) -> list[str]:
        """The chosen formats that are files (not folders generated from one)."""
        return [f for f in self.formats if not registry.FORMATS[f].folder]

    def targets(self) -> list[tuple[str, str]]:
        """``(format, precision)`` of every model file and folder to write, in order.

        Each precision asked for, in each chosen format that offers it (float32 files
        first). A folder format brings the file it is generated from (the C library and
        the TFLite Micro bundle: the int8 ``.tflite``), and comes after everything else.
        """
        files = self.file_formats()
        folders = [f for f in self.formats if registry.FORMATS[f].folder]
        out = [
            (fmt, precision)
            for precision in self.precisions()
            for fmt in files
            if precision in registry.FORMATS[fmt].precisions
        ]
        for fmt in folders:
            source = registry.FORMATS[fmt].source
            if source is not None and source not in out:
                out.append(source)
        always = [(n, f.precisions[0]) for n, f in registry.FORMATS.items() if not f.selectable]
        return out + always + [(fmt, "int8") for fmt in folders]

    def file_names(self) -> list[str]:
        """The files :meth:`targets` names, in order."""
        return [registry.FORMATS[fmt].file_name(precision) for fmt, precision in self.targets()]

    def gate(self, precision: str) -> Gate:
        """The gate for ``precision`` with this configuration's overrides applied."""
        gate = GATES[precision]
        if self.min_agreement is not None:
            gate = dataclasses.replace(gate, min_agreement=self.min_agreement)
        if self.max_accuracy_drop is not None:
            gate = dataclasses.replace(gate, max_accuracy_drop_pp=self.max_accuracy_drop)
        return gate

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {
            **dataclasses.asdict(self),
            "formats": list(self.formats),
            "verify_with": list(self.verify_with),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> ExportConfig:
        """The configuration :meth:`to_dict` wrote, checked as the command line is.

        Raises:
            edgecnn.records.RecordError: a field of another type (named).
            ConfigError: values no export accepts.
        """
        default = cls()
        return cls(
            formats=f.texts("formats"),
            int8=f.flag("int8", default.int8),
            fp16=f.flag("fp16", default.fp16),
            dynamic=f.flag("dynamic", default.dynamic),
            calib_samples=f.integer("calib_samples", default.calib_samples, least=1),
            full_integer=f.flag("full_integer", default.full_integer),
            calib_method=f.text("calib_method", default.calib_method),
            seed=f.integer("seed", default.seed),
            max_accuracy_drop=f.optional_number("max_accuracy_drop"),
            min_agreement=f.optional_number("min_agreement"),
            verify_with=f.texts("verify_with", default=()),
            remedy=f.text("remedy", default.remedy),
        )


def backend_names(text: str) -> tuple[str, ...]:
    """``--verify-with``: backend names separated by commas, each once, in order."""
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
