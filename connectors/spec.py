"""SourceSpec: one declarative description per source system.

A spec says where a source delivers, in which format, what each column means
(its canonical field and the parse rule that reads it) and which columns are
facts. Adding a source system is adding a spec (in Python, or as a TOML file in
``$TESSERA_HOME/sources/``), never a module.

The spec is also the interface contract the simulated agencies write to: the
simulator renders canonical values with the same rule names the connectors
parse, so ``parse(rule, render(rule, x)) == x`` is testable.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

Domain = Literal["municipal", "court", "commercial", "transport", "external"]
EntityType = Literal["person", "business"]
Cadence = Literal["snapshot", "delta"]
FormatKind = Literal[
    "csv", "delimited", "jsonl", "json", "parquet", "sqlite", "xml", "fixed_width", "database"
]
Engine = Literal["sqlite", "postgres", "mysql"]

FORMAT_KINDS: tuple[str, ...] = (
    "csv",
    "delimited",
    "jsonl",
    "json",
    "parquet",
    "sqlite",
    "xml",
    "fixed_width",
    "database",
)

# Canonical mention fields (DESIGN.md). A column's ``field`` is one of these, a
# ``fact:<name>`` (kept on the fact row), ``key`` (the source's record key),
# ``attr:<name>`` (kept as a mention attribute) or ``<role>.<field>`` for a
# related mention on the same row (e.g. ``legal_rep.id_number``).
PERSON_FIELDS: tuple[str, ...] = (
    "name",  # a whole name; the rule says the script and order
    "surname",
    "given",
    "dob",
    "sex",
    "birth_place",
    "id_number",
    "phone",
    "email",
    "address",  # a whole address string; split into parts by the rule
    "province",
    "city",
    "district",
    "street",
    "postcode",
    "plate",
    "passport",
)
BUSINESS_FIELDS: tuple[str, ...] = (
    "name",
    "uscc",
    "address",
    "province",
    "city",
    "district",
    "street",
    "postcode",
    "industry",
)
# Roles a related mention can play on a row, with its entity type.
RELATED_ROLES: dict[str, EntityType] = {
    "legal_rep": "person",
    "employer": "business",
    "spouse": "person",
    "household_head": "person",
    "company": "business",
}

_IDENT = re.compile(r"^[A-Za-z_\u4e00-\u9fff][\w\u4e00-\u9fff.\- ]*$")


@dataclass(frozen=True)
class Column:
    """One source column: its name as delivered, its meaning and how to read it.

    ``rule`` names a parse rule (``connectors.parsing``): ``text``, ``int``,
    ``decimal``, ``date:<style>``, ``sex:<style>``, ``name:<style>``,
    ``id:<style>``, ``phone:<style>``, ``uscc``, ``email``, ``plate``,
    ``passport``, ``address:<style>``. ``required`` columns must be present in
    every delivery (a missing one is schema drift and quarantines the file).
    """

    name: str
    field: str
    rule: str = "text"
    required: bool = True

    @property
    def role(self) -> str | None:
        """The related-mention role (``legal_rep`` in ``legal_rep.name``), if any."""
        head, _, rest = self.field.partition(".")
        return head if rest and head in RELATED_ROLES else None

    @property
    def canonical(self) -> str:
        """The field without its role prefix."""
        return self.field.split(".", 1)[1] if self.role else self.field


@dataclass(frozen=True)
class FormatOptions:
    """How a delivery is physically written.

    - csv / delimited: ``encoding``, ``delimiter``, ``header``.
    - jsonl: one object per line; nested objects are flattened with ``.``.
    - json: one document; ``record_path`` leads to the list of records.
    - parquet: typed columns (read as text for bronze).
    - sqlite: a database file per delivery; ``table`` is read.
    - xml: ``record_tag`` elements under the root; child elements are columns.
    - fixed_width: ``widths`` in characters, in column order; ``encoding``.
    - database: a live system; see :class:`DatabaseOptions`.
    """

    kind: FormatKind
    encoding: str = "utf-8"
    delimiter: str = ","
    header: bool = True
    record_path: tuple[str, ...] = ()
    record_tag: str = "record"
    widths: tuple[int, ...] = ()
    table: str | None = None
    file_glob: str = "*"


@dataclass(frozen=True)
class DatabaseOptions:
    """A live source database, read incrementally by high-water mark.

    ``query`` selects one row per record (joins allowed) and must expose
    ``key`` and ``cursor`` columns; ``deleted_flag`` names a soft-delete column
    if the system has one. Hard deletes are found by comparing key sets
    (``key_query``).

    ``cursor_columns`` is for a cursor computed from several tables (the later
    of two ``update_time`` stamps), which no index can serve: it names query
    output columns that pass each table's own indexed stamp through unchanged,
    such that the cursor is always one of their values (or null). The
    incremental read then filters each of them on its own, so each is served
    by its index; they are helper columns, left out of the extracted rows
    unless the spec names them otherwise.
    """

    engine: Engine
    database: str
    query: str
    key: str
    cursor: str
    key_query: str
    deleted_flag: str | None = None
    cursor_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceSpec:
    """Everything Tessera knows about one source system."""

    id: str
    title: str
    domain: Domain
    entity: EntityType
    format: FormatOptions
    cadence: Cadence
    columns: tuple[Column, ...]
    fact_type: str | None = None
    duplicate_free: bool = False
    database: DatabaseOptions | None = None
    description: str = ""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def key_column(self) -> str | None:
        """The column holding the source's own record key, if it has one."""
        for c in self.columns:
            if c.field == "key":
                return c.name
        return None

    @property
    def engine(self) -> str:
        """``file`` for file drops, else the database engine."""
        return self.database.engine if self.database else "file"

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.id}: no column {name!r}")

    def with_database(self, database: DatabaseOptions) -> SourceSpec:
        return replace(self, database=database)


class SpecError(ValueError):
    """A SourceSpec that cannot be used, with the source and the reason."""


def validate(spec: SourceSpec) -> None:
    """Raise :class:`SpecError` if the spec is inconsistent or unsafe.

    Identifiers that end up in SQL or paths (source id, column names, table) are
    checked here, so nothing downstream has to trust them.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]{1,62}", spec.id):
        raise SpecError(f"source id {spec.id!r}: use lower-case letters, digits and _")
    if spec.format.kind not in FORMAT_KINDS:
        raise SpecError(f"{spec.id}: unknown format {spec.format.kind!r}")
    if (spec.format.kind == "database") != (spec.database is not None):
        raise SpecError(f"{spec.id}: format 'database' needs database options and vice versa")
    if not spec.columns:
        raise SpecError(f"{spec.id}: no columns")
    names = [c.name for c in spec.columns]
    if len(set(names)) != len(names):
        raise SpecError(f"{spec.id}: duplicate column names")
    allowed = PERSON_FIELDS if spec.entity == "person" else BUSINESS_FIELDS
    for c in spec.columns:
        if not _IDENT.match(c.name):
            raise SpecError(f"{spec.id}: column name {c.name!r} is not a plain identifier")
        f = c.field
        if f == "key" or f.startswith(("fact:", "attr:")):
            continue
        if c.role:
            role_fields = PERSON_FIELDS if RELATED_ROLES[c.role] == "person" else BUSINESS_FIELDS
            if c.canonical not in role_fields:
                raise SpecError(f"{spec.id}: {c.name}: {c.canonical!r} is not a {c.role} field")
            continue
        if f not in allowed:
            raise SpecError(f"{spec.id}: {c.name}: {f!r} is not a {spec.entity} field")
    if spec.format.kind == "fixed_width" and len(spec.format.widths) != len(spec.columns):
        raise SpecError(f"{spec.id}: fixed_width needs one width per column")
    if spec.format.table is not None and not re.fullmatch(r"[A-Za-z_]\w*", spec.format.table):
        raise SpecError(f"{spec.id}: table name {spec.format.table!r} is not an identifier")


def spec_from_dict(d: dict[str, Any]) -> SourceSpec:
    """Build a spec from plain data (the TOML layout; see ``docs/sources.md``)."""
    try:
        fmt = FormatOptions(
            **{
                **d["format"],
                **{k: tuple(v) for k, v in d["format"].items() if k in ("record_path", "widths")},
            }
        )
        cols = tuple(Column(**c) for c in d["columns"])
        db = None
        if "database" in d:
            opts = dict(d["database"])
            if "cursor_columns" in opts:  # a TOML array; the spec is frozen and hashable
                opts["cursor_columns"] = tuple(opts["cursor_columns"])
            db = DatabaseOptions(**opts)
        return SourceSpec(
            id=d["id"],
            title=d.get("title", d["id"]),
            domain=d.get("domain", "external"),
            entity=d["entity"],
            format=fmt,
            cadence=d.get("cadence", "delta"),
            columns=cols,
            fact_type=d.get("fact_type"),
            duplicate_free=bool(d.get("duplicate_free", False)),
            database=db,
            description=d.get("description", ""),
        )
    except (KeyError, TypeError) as exc:
        raise SpecError(f"spec {d.get('id', '?')}: {exc}") from exc


def load_toml(path: Path) -> SourceSpec:
    """Read one SourceSpec from a TOML file; errors name the file."""
    try:
        with path.open("rb") as fh:
            return spec_from_dict(tomllib.load(fh))
    except (tomllib.TOMLDecodeError, SpecError) as exc:
        raise SpecError(f"{path}: {exc}") from exc
