"""Export configuration: which files to write and what each must prove before it is kept."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.export import formats as registry
from edgecnn.runtime.backends import BACKENDS
from edgecnn.runtime.verify import DEFAULT_MAX_PROB_DIFF, DEFAULT_MIN_AGREEMENT

#: Formats ``--formats`` chooses from; the others (weights.npz) are always written.
FORMATS = tuple(name for name, fmt in registry.FORMATS.items() if fmt.selectable)
#: What ``edgecnn export`` writes unless told: the files apps load.
DEFAULT_FORMATS = ("tflite", "onnx")
#: Generated from the int8 .tflite: microcontroller targets.
FOLDER_FORMATS = tuple(name for name, fmt in registry.FORMATS.items() if fmt.folder)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def _apart(value: float, limit: float, scale: float = 1.0) -> tuple[str, str]:
    """``value`` and ``limit`` printed with enough decimals to tell them apart."""
    for digits in (2, 3, 4, 6):
        a, b = f"{scale * value:.{digits}f}", f"{scale * limit:.{digits}f}"
        if a != b:
            return a, b
    return f"{scale * value:g}", f"{scale * limit:g}"


@dataclass(frozen=True)
class Gate:
    """What an exported file must reach against the Keras model on the test images."""

    min_agreement: float
    max_accuracy_drop_pp: float | None = None
    max_prob_diff: float | None = None

    def failures(self, row: dict[str, Any]) -> list[str]:
        """Why ``row`` (a verification result) fails this gate; empty if it passes.

        Every test is written so that a NaN measurement fails it.
        """
        why = []
        if not row["agreement"] >= self.min_agreement:
            got, limit = _apart(row["agreement"], self.min_agreement, 100)
            why.append(f"top-1 agreement {got}% < {limit}%")
        if self.max_accuracy_drop_pp is not None and not (
            -row["delta_pp"] <= self.max_accuracy_drop_pp
        ):
            got, limit = _apart(-row["delta_pp"], self.max_accuracy_drop_pp)
            why.append(f"accuracy dropped {got} pp > {limit} pp")
        if self.max_prob_diff is not None and not row["max_prob_diff"] <= self.max_prob_diff:
            why.append(
                f"max probability difference {row['max_prob_diff']:.2e} > {self.max_prob_diff:.0e}"
            )
        return why


#: The default gate of each precision. Its agreement and probability difference live in
#: the runtime, whose ``edgecnn verify`` never lets a reference ask less of a file.
GATES = {
    "float32": Gate(
        DEFAULT_MIN_AGREEMENT["float32"], max_prob_diff=DEFAULT_MAX_PROB_DIFF["float32"]
    ),
    "float16": Gate(DEFAULT_MIN_AGREEMENT["float16"]),
    "dynamic": Gate(DEFAULT_MIN_AGREEMENT["dynamic"], max_accuracy_drop_pp=0.5),
    "int8": Gate(DEFAULT_MIN_AGREEMENT["int8"], max_accuracy_drop_pp=0.5),
}


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

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ConfigError(
                f"--formats takes a comma-separated subset of "
                f"{','.join(FORMATS)} (or all); got {','.join(self.formats) or 'nothing'}"
            )
        if (self.fp16 or self.dynamic) and "tflite" not in self.formats:
            flag = "--fp16" if self.fp16 else "--dynamic"
            raise ConfigError(f"{flag} writes a TFLite file; add tflite to --formats")
        if self.full_integer and ("tflite", "int8") not in self.targets():
            raise ConfigError("--full-integer changes the int8 .tflite file; add --int8")
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

    def targets(self) -> list[tuple[str, str]]:
        """``(format, precision)`` of every model file and folder to write, in order.

        A folder format brings the file it is generated from (the C library and the
        TFLite Micro bundle: the int8 ``.tflite``), and comes after everything else.
        """
        files = [f for f in self.formats if not registry.FORMATS[f].folder]
        folders = [f for f in self.formats if registry.FORMATS[f].folder]
        out = [(fmt, "float32") for fmt in files]
        if self.fp16:
            out.append(("tflite", "float16"))
        if self.dynamic:
            out.append(("tflite", "dynamic"))
        if self.int8:
            out += [(fmt, "int8") for fmt in files]
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            **dataclasses.asdict(self),
            "formats": list(self.formats),
            "verify_with": list(self.verify_with),
        }


def backend_names(text: str) -> tuple[str, ...]:
    """``--verify-with``: backend names separated by commas, each once, in order."""
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
