"""S3 (and S3-compatible) access through boto3, imported only when an s3:// URI is used.

Credentials come only from boto3's standard chain (environment, profile,
instance or pod role); the endpoint from ``AWS_ENDPOINT_URL(_S3)`` for MinIO,
Ceph or R2. Throttling (SlowDown) and 5xx are retried by botocore's adaptive
mode with jittered backoff.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

_RETRIES = {"max_attempts": 10, "mode": "adaptive"}


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, key


@functools.lru_cache(maxsize=1)
def client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries=_RETRIES, connect_timeout=10, read_timeout=60))


def read_bytes(uri: str) -> bytes:
    bucket, key = split_uri(uri)
    return client().get_object(Bucket=bucket, Key=key)["Body"].read()


def download_file(uri: str, path: str | Path) -> None:
    bucket, key = split_uri(uri)
    client().download_file(bucket, key, str(path))


def write_bytes(uri: str, data: bytes) -> int:
    """PUT (multipart above 8 MB via the transfer manager); returns the size HEAD confirms."""
    import io

    bucket, key = split_uri(uri)
    client().upload_fileobj(io.BytesIO(data), bucket, key)
    confirmed = size_of(uri)
    if confirmed != len(data):
        raise OSError(f"{uri}: uploaded {len(data)} bytes but HEAD reports {confirmed}")
    return confirmed


def size_of(uri: str) -> int | None:
    from botocore.exceptions import ClientError

    bucket, key = split_uri(uri)
    try:
        return int(client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def list_prefix(uri: str) -> Iterator[tuple[str, int]]:
    """Yield (key, size) under a prefix, page by page (never the whole listing at once)."""
    bucket, prefix = split_uri(uri)
    paginator = client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            yield entry["Key"], int(entry["Size"])


def list_items(uri: str, extensions: tuple[str, ...]):
    """Yield :class:`~raysr.sources.listing.InputItem` for a single object or every object under a prefix."""
    from raysr.sources.listing import InputItem

    bucket, prefix = split_uri(uri)
    root = prefix if prefix.endswith("/") or not prefix else prefix.rsplit("/", 1)[0] + "/"
    for key, size in list_prefix(uri):
        if key.lower().endswith(extensions) and not key.endswith("/"):
            relative = key[len(root):] if key.startswith(root) else key.rsplit("/", 1)[-1]
            yield InputItem(f"s3://{bucket}/{key}", relative, size)
