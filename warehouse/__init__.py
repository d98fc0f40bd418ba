"""The analyst warehouse: one DuckDB file, published atomically.

- :mod:`warehouse.schema`: the SQL that turns the lake (staged mentions, records,
  relationships) and linkage outputs into the published tables and views.
- :mod:`warehouse.publish`: ``publish(home)`` builds a new file next to
  ``warehouse.duckdb``, smoke-checks it and swaps it in with ``os.replace``.
- :mod:`warehouse.search`: identifier and name search (read-only, bound parameters).
- :mod:`warehouse.entity_file`: the per-entity document.

See ``docs/warehouse.md`` for every table, its grain and example queries.
"""
