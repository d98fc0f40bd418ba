"""Deliberate file faults: what goes wrong with a delivery after it is written.

Each fault rewrites a file that :func:`simulation.formats.write_delivery` wrote,
deterministically for a given generator state, and each docstring says exactly
how the fault shows up in ``connectors.readers.read_delivery``'s quarantine, so
tests and the simulator's truth can state what the reader must report.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from pathlib import Path

import numpy as np

from connectors.spec import FormatOptions

LINE_KINDS = ("csv", "delimited", "jsonl", "xml", "fixed_width")


def inject_malformed_rows(fmt: FormatOptions, path: Path, rng: np.random.Generator, n: int) -> int:
    """Make ``n`` records of a text delivery unreadable; return how many originals are lost.

    How each kind is damaged and what the reader reports:

    - csv / delimited: ``n`` random data lines lose their second half of fields
      (a record cut short; a one-column file gets two extra fields instead).
      Each is one quarantine row ``"line has <k> fields, expected <N>"``.
    - fixed_width: ``n`` random lines are cut to half their length. Each is one
      quarantine row ``"fixed-width line is <k> characters, expected <W>"``.
    - jsonl: ``n`` random lines are cut to half their length. Each is one
      quarantine row ``"invalid JSON: <message> at col <c>"``.
    - xml: an XML parser cannot skip a bad record, so one broken record (an end
      tag without its ``>``) is *inserted* before the last ``n`` records. The
      reader keeps the records before it and reports the rest of the file as ONE
      quarantine row ``"malformed XML: unparseable from byte <b> (not well-formed
      (invalid token): ...)"`` whose ``line`` is the broken record's index and
      whose ``raw`` starts at the broken record; the ``n`` records after it are lost.

    Returns the number of records the writer delivered that the reader will no
    longer put in ``rows`` (``min(n, records)``); for every kind but xml that is
    also the number of quarantine rows the fault adds. Other kinds: ``ValueError``.
    """
    if fmt.kind not in LINE_KINDS:
        raise ValueError(f"inject_malformed_rows: {fmt.kind} is not a line-oriented text format")
    if n <= 0:
        return 0
    enc = "utf-8" if fmt.kind == "xml" else codecs.lookup(fmt.encoding).name
    lines = Path(path).read_bytes().decode(enc).split("\n")
    if fmt.kind == "xml":
        return _break_xml(fmt, path, lines, n)
    first = 1 if fmt.kind in ("csv", "delimited") and fmt.header else 0
    candidates = [i for i in range(first, len(lines)) if lines[i]]
    k = min(n, len(candidates))
    chosen = sorted(int(i) for i in rng.choice(candidates, size=k, replace=False)) if k else []
    for i in chosen:
        if fmt.kind in ("csv", "delimited"):
            lines[i] = _cut_fields(lines[i], fmt.delimiter)
        elif len(lines[i]) >= 2:
            lines[i] = lines[i][: len(lines[i]) // 2]
        else:  # half of one character would be an empty line, which is no record
            lines[i] += "#"
    Path(path).write_bytes("\n".join(lines).encode(enc))
    return k


def _cut_fields(line: str, sep: str) -> str:
    fields = next(csv.reader([line], delimiter=sep))
    kept = fields[: len(fields) // 2] if len(fields) > 1 else fields + ["#CORRUPT#", "#CORRUPT#"]
    out = io.StringIO()
    csv.writer(out, delimiter=sep, lineterminator="").writerow(kept)
    return out.getvalue()


def _break_xml(fmt: FormatOptions, path: Path, lines: list[str], n: int) -> int:
    start = re.compile(f"<{re.escape(fmt.record_tag)}[\\s>/]")
    records = [i for i, line in enumerate(lines) if start.match(line)]
    k = min(n, len(records))
    if k == 0:
        return 0
    tag = fmt.record_tag
    broken = f"<{tag}><corrupt>#CORRUPT#</corrupt"  # end tag without '>'
    lines.insert(records[len(records) - k], broken)
    Path(path).write_bytes("\n".join(lines).encode("utf-8"))
    return k


def truncate_file(path: Path, rng: np.random.Generator) -> None:
    """Cut a delivery file short, mid-line, somewhere in its last quarter.

    The cut falls strictly inside a line of at least two characters and on a
    character boundary (UTF-8, else GB18030), so it reads as a truncated record,
    not as an encoding fault; the file no longer ends with a line end. The reader
    reports:

    - csv / delimited: the cut line as ``"last line has no line end (file
      truncated mid-record?)"``; records after it are simply absent.
    - fixed_width: the cut line as ``"fixed-width line is <k> characters,
      expected <W>"``. jsonl: ``"invalid JSON: ..."`` for the cut line.
    - xml: one row ``"truncated XML: unparseable from byte <b> (...)"`` holding
      the text from the cut record on.
    - json (one document), parquet, sqlite: the whole file is one quarantine row
      with ``line`` null (``"invalid JSON document: ..."``, ``"file unreadable as
      parquet: ..."``, ``"file unreadable as sqlite: truncated to <n> of <m>
      bytes"``).
    """
    data = Path(path).read_bytes()
    size = len(data)
    if size < 2:
        return
    enc = _text_encoding(data)
    pos = int(rng.integers(size * 3 // 4, size))
    start, end = _line_around(data, pos)
    chars = data[start:end].decode(enc)
    while len(chars) < 2 and start > 0:
        start, end = _line_around(data, start - 1)
        chars = data[start:end].decode(enc)
    if len(chars) < 2:
        return
    keep = round((pos - start) / max(end - start, 1) * len(chars))
    keep = min(max(keep, 1), len(chars) - 1)
    Path(path).write_bytes(data[:start] + chars[:keep].encode(enc))


def _text_encoding(data: bytes) -> str:
    """The encoding whose character boundaries a cut must respect (latin-1: bytes)."""
    for enc in ("utf-8", "gb18030"):
        try:
            data.decode(enc)
        except UnicodeDecodeError:
            continue
        return enc
    return "latin-1"


def _line_around(data: bytes, pos: int) -> tuple[int, int]:
    """Start and end (exclusive, without the line end) of the line holding byte ``pos``."""
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    return start, len(data) if end < 0 else end


def reencode(path: Path, from_enc: str, to_enc: str) -> None:
    """Rewrite a text file in another encoding: the "file in the wrong encoding" fault.

    Read with a spec that still declares ``from_enc``:

    - declared UTF-8, delivered GB18030: every line with non-ASCII text fails to
      decode and is quarantined as ``"line is not valid utf-8 (file may be in
      another encoding)"``; ASCII-only lines read normally. For csv with a
      non-ASCII header, every line is quarantined (the header, for that reason;
      the others as ``"header line is not readable, so fields cannot be named"``).
    - declared GB18030, delivered UTF-8: the bytes mostly decode as GB18030
      mojibake, so the reader detects the file as UTF-8 instead and quarantines
      each non-ASCII line as ``"line looks like utf-8, not gb18030 (file may be in
      another encoding)"`` (a non-ASCII csv header quarantines every line, as above).
    - xml (declared UTF-8 in its prolog) delivered in GB18030: the records before
      the first non-ASCII character are read; from there on the file is one
      quarantine row ``"malformed XML: unparseable from byte <b> (not well-formed
      (invalid token): ...)"``.
    - ``from_enc == to_enc`` leaves the file as it was (no fault).
    """
    data = Path(path).read_bytes()
    Path(path).write_bytes(data.decode(from_enc).encode(to_enc))
