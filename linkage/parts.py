"""Where a linkage output stands after incremental links: the base file written by
the last full link and the delta parts each incremental link appended.

Light on purpose (no Splink, no polars): the warehouse's publish and search read
linkage outputs through :func:`linkage_sql` (DuckDB) without importing the linker.
:func:`linkage.report.read_linkage` is the polars reader of the same files and
:func:`linkage.report.append_linkage` the writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tessera.config import Home

# What a later delta part replaces in the earlier ones (None: parts only add rows).
# ``features``: the rows with the same mention ID (the part holds new mentions and
# restated ones); ``evidence``: every row of the entity IDs in the part's void list
# (the part holds the complete evidence of the entities it re-explains).
DELTA_KEYS: dict[str, str | None] = {
    "edges": None,
    "evidence": "entity_id",
    "features": "mention_id",
}


def _stamp(base: Path) -> str:
    """Which base file a delta part extends: size and a hash of the file's tail (its
    Parquet footer), so parts written after one full link are ignored once the next
    full link rewrites the base (copies of the folder keep matching)."""
    size = base.stat().st_size
    with base.open("rb") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
    return hashlib.sha1(str(size).encode() + tail).hexdigest()[:12]


def _delta_dir(home: Home, entity_type: str, kind: str) -> Path:
    return home.lake / "linkage" / f"{entity_type}_{kind}_delta"


def linkage_parts(home: Home, entity_type: str, kind: str) -> list[Path]:
    """The files of one linkage output, oldest first: the base
    ``<type>_<kind>.parquet`` and the delta parts appended since it was written."""
    if kind not in DELTA_KEYS:
        raise ValueError(f"{kind!r} has no delta parts (one of {sorted(DELTA_KEYS)})")
    base = home.lake / "linkage" / f"{entity_type}_{kind}.parquet"
    if not base.exists():
        return []
    d = _delta_dir(home, entity_type, kind)
    parts = sorted(d.glob(f"{_stamp(base)}-*[0-9].parquet")) if d.exists() else []
    return [base, *parts]


def void_files(paths: list[Path]) -> list[Path]:
    """For each delta part of ``paths`` (:func:`linkage_parts`, base first), the file
    whose key column names the earlier rows it replaces: its ``.void.parquet`` when
    it has one, else the part itself."""
    out = []
    for p in paths[1:]:
        void = p.with_name(p.stem + ".void.parquet")
        out.append(void if void.exists() else p)
    return out


def linkage_sql(home: Home, entity_type: str, kind: str) -> str:
    """A ``SELECT`` over one linkage output as it stands, read by DuckDB: the base file
    and the parts incremental links appended, later parts replacing earlier rows as
    :func:`linkage.report.read_linkage` merges them (an anti-join on the kind's key),
    so a large world's rows are not copied through polars. Paths are the home's, not
    user values."""
    paths = linkage_parts(home, entity_type, kind)
    if not paths:
        raise FileNotFoundError(f"no {entity_type} {kind} in {home.lake / 'linkage'}")

    def files(ps: list[Path]) -> str:
        quoted = ", ".join("'" + str(p).replace("'", "''") + "'" for p in ps)
        return f"read_parquet([{quoted}], union_by_name = true)"

    key = DELTA_KEYS[kind]
    if len(paths) == 1 or key is None:
        return f"SELECT * FROM {files(paths)}"
    voids = void_files(paths)
    arms = []
    for i, p in enumerate(paths):
        later = voids[i:]
        if later:
            arms.append(
                f"SELECT f.* FROM {files([p])} AS f ANTI JOIN "
                f"(SELECT DISTINCT {key} FROM {files(later)}) AS v USING ({key})"
            )
        else:
            arms.append(f"SELECT * FROM {files([p])}")
    return " UNION ALL BY NAME ".join(f"({a})" for a in arms)


def file_stat(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of ``path``, None when there is no such file: the state the
    linkage's records keep of the files they were computed from."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _entity_map_state(home: Home, entity_type: str) -> list[int] | None:
    """:func:`file_stat` of ``<type>_entities.parquet``: what
    :func:`linkage.score_store.map_state` records for it."""
    return file_stat(home.lake / "linkage" / f"{entity_type}_entities.parquet")


def _linked_files_path(home: Home, entity_type: str) -> Path:
    return home.lake / "linkage" / f"{entity_type}_linked_files.json"


def mention_file_states(home: Home) -> dict[str, list[int]]:
    """Each staged mention file (path under the lake) with its size and mtime."""
    from connectors import lake

    out = {}
    for p in lake.staged_files(home, "mentions"):
        st = p.stat()
        out[str(p.relative_to(home.lake))] = [st.st_size, st.st_mtime_ns]
    return out


def unlinked_files(home: Home, entity_type: str) -> list[Path] | None:
    """The staged mention files the last incremental link had not seen, from its
    record (``<type>_linked_files.json``: the files it read and the entity map it
    wrote); None (read every file) when there is no record, the entity map is not the
    one it wrote (a full relink since), or a file it saw has changed or gone. A new
    mention's rows are all in such files: the link that wrote the map saw every
    older one."""
    path = _linked_files_path(home, entity_type)
    if not path.exists():
        return None
    rec = json.loads(path.read_text(encoding="utf-8"))
    if rec.get("map") != _entity_map_state(home, entity_type):
        return None
    now = mention_file_states(home)
    if any(now.get(k) != v for k, v in rec["files"].items()):
        return None
    return [home.lake / k for k in sorted(now) if k not in rec["files"]]


def record_linked_files(home: Home, entity_type: str, states: dict[str, list[int]]) -> None:
    """Write the record :func:`unlinked_files` reads (after the entity map)."""
    rec = {"map": _entity_map_state(home, entity_type), "files": states}
    path = _linked_files_path(home, entity_type)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec), encoding="utf-8")
    tmp.replace(path)
