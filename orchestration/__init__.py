"""Dagster wiring over the Tessera libraries (no business logic here)."""
