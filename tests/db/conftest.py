from tests.pg import database_dsn, migrated_pool, server_dsn

__all__ = ["database_dsn", "migrated_pool", "server_dsn"]
