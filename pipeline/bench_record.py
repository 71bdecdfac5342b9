"""``bench.json``: what ``edgecnn run``'s bench stage measured, as a typed record.

Each result is a row of :func:`edgecnn.runtime.benchmark.bench_model` with the file's
name as ``model``; the report, the summary and ``edgecnn bundle`` read the figures they
show through :class:`BenchResult`, never by string keys. The row is written back whole
(``measured``), so figures no reader here needs (p99, load time) stay in the file.

Schema 1 is today's layout; a file without ``schema`` is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.records import Fields, JSONObject, RecordError, check_schema, read_record

#: The schema :meth:`BenchRecord.to_dict` writes.
SCHEMA = 1


@dataclass(frozen=True)
class Throughput:
    """Images per second at one batch size, and the ratio against the bare interpreter."""

    images_per_s: float
    ratio: float


@dataclass(frozen=True)
class BenchResult:
    """One benchmarked file: single-image latency, throughput per batch size, memory."""

    model: str
    backend: str
    #: None: the backend picks its own threads (numpy's BLAS).
    threads: int | None
    #: Single-image calls timed.
    runs: int | None
    p50_us: float
    p95_us: float
    raw_p50_us: float
    latency_ratio: float
    #: Batch size -> throughput.
    throughput: Mapping[int, Throughput]
    cold_start_s: float | None = None
    peak_rss_one_image_mb: float | None = None
    #: The row as measured, written back whole.
    measured: JSONObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_fields(cls, f: Fields) -> BenchResult:
        """A result row (named in errors as ``results[i]``)."""
        latency, raw = f.object("latency_us"), f.object("raw_latency_us")
        throughput = f.object("throughput", default={})
        sizes = {}
        for key in throughput.data:
            if not (str(key).isascii() and str(key).isdigit()):
                raise RecordError(f"{throughput.where} has {str(key)[:20]!r}, not a batch size")
            t = throughput.object(str(key))
            sizes[int(key)] = Throughput(t.number("images_per_s"), t.number("ratio"))
        threads = f.raw("threads")
        return cls(
            model=f.text("model"),
            backend=f.text("backend"),
            threads=None if threads is None else f.integer("threads", least=1),
            runs=None if "runs" not in f else f.integer("runs", least=1),
            p50_us=latency.number("p50"),
            p95_us=latency.number("p95"),
            raw_p50_us=raw.number("p50"),
            latency_ratio=f.number("latency_ratio"),
            throughput=sizes,
            cold_start_s=f.optional_number("cold_start_s"),
            peak_rss_one_image_mb=f.optional_number("peak_rss_one_image_mb"),
            measured=dict(f.data),
        )


@dataclass(frozen=True)
class BenchSkipped:
    """A kept file the bench stage did not run, and why (a native library not built now)."""

    model: str
    reason: str

    def to_dict(self) -> JSONObject:
        """JSON-ready form."""
        return {"model": self.model, "reason": self.reason}


@dataclass(frozen=True)
class BenchRecord:
    """``bench.json``: the batch sizes measured, this machine's cores, a result per file."""

    batch_sizes: tuple[int, ...]
    results: tuple[BenchResult, ...]
    skipped: tuple[BenchSkipped, ...] = ()
    cpu_count: int | None = None
    schema: int = SCHEMA

    def latency_by_file(self) -> dict[str, float]:
        """Single-image p50 latency (us) per file name."""
        return {r.model: r.p50_us for r in self.results}

    def to_dict(self) -> JSONObject:
        """JSON-ready form: ``bench.json``."""
        return {
            "schema": SCHEMA,
            "batch_sizes": list(self.batch_sizes),
            "cpu_count": self.cpu_count,
            "results": [dict(r.measured) for r in self.results],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    @classmethod
    def from_fields(cls, f: Fields) -> BenchRecord:
        """The record :meth:`to_dict` wrote, or a schema-1 one without ``schema``.

        Raises:
            RecordError: a field the bench stage never writes (named), or a newer schema.
        """
        schema = check_schema(f, SCHEMA, "the bench record")
        sizes = f.numbers("batch_sizes", default=())
        if not all(s.is_integer() and s >= 1 for s in sizes):
            raise RecordError(f"batch_sizes is {list(sizes)!r:.40}, not a list of batch sizes")
        return cls(
            batch_sizes=tuple(int(s) for s in sizes),
            results=tuple(BenchResult.from_fields(r) for r in f.objects("results")),
            skipped=tuple(
                BenchSkipped(s.text("model"), s.text("reason"))
                for s in f.objects("skipped", required=False)
            ),
            cpu_count=None if "cpu_count" not in f else f.integer("cpu_count", least=1),
            schema=schema,
        )


def read_bench(path: Path) -> BenchRecord:
    """``bench.json`` read bounded and strict.

    Raises:
        RecordError: unreadable, or a field the bench stage never writes (named).
    """
    return read_record(path, BenchRecord.from_fields, "a bench record")
