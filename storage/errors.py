"""The one domain exception of storage/: psycopg errors are turned into it at this edge."""


class StorageError(Exception):
    """A database operation failed in a way the caller must handle (not a bad message)."""
