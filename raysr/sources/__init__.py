"""Sources: list inputs (local, S3), read bytes, decode and validate."""
