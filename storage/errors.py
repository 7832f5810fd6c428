"""The base of storage's own exceptions: a failed migration, an unreachable database, a
corrupt or missing evidence file, a refused case transition. Transient psycopg errors
(a dropped connection) still reach callers as psycopg's own, for their retry loops."""


class StorageError(Exception):
    """A database operation failed in a way the caller must handle (not a bad message)."""
