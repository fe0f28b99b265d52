"""The one result writer of ``python -m model predict`` (both engines) and the one CSV row of a result.

A *record* is one file's full result as ``Result.to_dict()`` gives it (JSON types only). Every output is written
from records:

    with ResultWriter("scores.csv") as w:      # or .jsonl / .json / .parquet, or None (stdout) with fmt=
        for res in results:
            w.write(res.to_dict())

* ``csv``: ``columns(detectors)`` (``csv_row``): path, kind, faces, score (calibrated P(fake), 6 decimals, empty
  without a face), label, error and note (one line each); then the file's content credentials
  (``model.provenance``), which never enter the score: provenance (none / valid / untrusted / invalid / error;
  empty when not read), provenance_signer (the signing certificate's organisation or name) and provenance_ai (yes /
  no when an intact credential declares a digital source type, else empty); then, per detector of the engine
  (``model.registry``, registry order), ``score_<key>`` and ``label_<key>`` (that detector's calibrated P(fake)
  and label), and ``verdict``: the combined verdict (``model.registry.VERDICT_RULE``). ``score`` / ``label``
  stay the default (first) detector's.
* ``jsonl``: the full record (with the whole ``provenance`` dict), one JSON object per line.
* ``json``: the full records as one array (indented); valid once the writer is closed.
* ``parquet`` (chosen by an output ending in ``.parquet``): ``COLUMNS`` typed (faces int64, score float64, null
  without a face), written in row groups of ``group`` rows to ``OUTPUT.tmp``, renamed when closed.

Text formats are flushed after every record, so an interrupted run keeps the rows of the files that finished and
memory does not grow with the number of files.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from typing import Any, Mapping, Sequence

COLUMNS = ("path", "kind", "faces", "score", "label", "error", "note", "provenance", "provenance_signer",
           "provenance_ai")
FORMATS = ("csv", "jsonl", "json", "parquet")


def columns(detectors: Sequence[str] = ()) -> list[str]:
    """The CSV / Parquet columns for an engine with ``detectors`` (keys, registry order)."""
    extra = [c for k in detectors for c in (f"score_{k}", f"label_{k}")]
    return [*COLUMNS, *extra, *(["verdict"] if detectors else [])]


def _score(v) -> str:
    return "" if v is None else f"{float(v):.6f}"


def csv_row(record: Mapping[str, Any], detectors: Sequence[str] = ()) -> dict[str, Any]:
    """The CSV columns of one record (``Result.to_dict()``): the score with 6 decimals ("" without one), error and
    note on one line; the provenance state, signer and AI claim from ``record["provenance"]`` ("" without one);
    with ``detectors``, each one's score and label (from ``record["detectors"]``) and the combined verdict."""
    prov = record.get("provenance") if isinstance(record.get("provenance"), Mapping) else {}
    row = {"path": record["path"], "kind": record["kind"], "faces": int(record.get("faces") or 0),
           "score": _score(record.get("score")), "label": record.get("label") or "unknown",
           "error": " ".join(str(record.get("error") or "").split()),
           "note": " ".join(str(record.get("note") or "").split()),
           "provenance": str(prov.get("state") or ""),
           "provenance_signer": " ".join(str(prov.get("signer") or "").split()),
           "provenance_ai": str(prov.get("ai") or "")}
    if detectors:
        per = record.get("detectors") if isinstance(record.get("detectors"), Mapping) else {}
        for k in detectors:
            d = per.get(k) or {}
            row[f"score_{k}"] = _score(d.get("score"))
            row[f"label_{k}"] = d.get("label") or "unknown"
        row["verdict"] = record.get("verdict") or "unknown"
    return row


def output_format(output: str | None, fmt: str = "csv") -> str:
    """The format written: ``parquet`` for an output ending in ``.parquet``, else ``fmt``."""
    return "parquet" if output and str(output).endswith(".parquet") else fmt


class ResultWriter:
    """Streams records to ``output`` (a path, or stdout when None) in ``output_format(output, fmt)``."""

    def __init__(self, output: str | os.PathLike | None, fmt: str = "csv", group: int = 10_000,
                 detectors: Sequence[str] = ()):
        self.output = None if output is None else str(output)
        self.detectors = list(detectors)
        self.columns = columns(self.detectors)
        self.kind = output_format(self.output, fmt)
        if self.kind not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.kind == "parquet" and self.output is None:
            raise ValueError("parquet needs an output file")
        self.group, self.n = max(1, int(group)), 0
        self._buf: list[dict[str, Any]] = []
        self._pq = None
        self._tmp = (self.output + ".tmp") if self.kind == "parquet" else None
        self._f = None
        if self.kind == "parquet":
            return
        self._f = open(self.output, "w", newline="") if self.output else sys.stdout
        if self.kind == "csv":
            self._csv = csv.DictWriter(self._f, fieldnames=self.columns, lineterminator="\n")
            self._csv.writeheader()
        elif self.kind == "json":
            self._f.write("[")
        self._f.flush()

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one file's record (text formats: flushed at once)."""
        if self.kind == "parquet":
            self._buf.append(csv_row(record, self.detectors))
            if len(self._buf) >= self.group:
                self._write_group()
        elif self.kind == "csv":
            self._csv.writerow(csv_row(record, self.detectors))
        elif self.kind == "jsonl":
            self._f.write(json.dumps(record) + "\n")
        else:
            self._f.write(("\n" if self.n == 0 else ",\n") + json.dumps(record, indent=2))
        if self._f is not None:
            self._f.flush()
        self.n += 1

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        scores = ["score", *(f"score_{k}" for k in self.detectors)]
        types = {"faces": pa.int64(), **{c: pa.float64() for c in scores}}
        schema = pa.schema([(c, types.get(c, pa.string())) for c in self.columns])
        cols = {c: [r[c] for r in self._buf] for c in self.columns}
        for c in scores:
            cols[c] = [None if v == "" else float(v) for v in cols[c]]
        if self._pq is None:
            self._pq = pq.ParquetWriter(self._tmp, schema)
        self._pq.write_table(pa.table(cols, schema=schema))
        self._buf = []

    def close(self) -> None:
        """Finish the output: the JSON array is closed, the Parquet file renamed into place."""
        if self.kind == "parquet":
            if self._buf or self._pq is None:
                self._write_group()
            self._pq.close()
            os.replace(self._tmp, self.output)
            return
        if self.kind == "json":
            self._f.write("\n]\n")
        self._end()

    def abort(self) -> None:
        """Stop after an error or an interrupt: the rows written so far stay in a CSV / JSON Lines file (a JSON
        array stays unclosed, so it does not pass for complete); a Parquet output is not created."""
        if self.kind == "parquet":
            if self._pq is not None:
                self._pq.close()
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)
            return
        self._end()

    def _end(self) -> None:
        if self.output:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
