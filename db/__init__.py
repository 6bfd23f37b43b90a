"""Postgres: the pool, numbered migrations, one query module per table, the embedded server.

Nothing outside `db/` imports asyncpg; query functions return dataclasses, never raw records.
"""
