"""S3 (and S3-compatible) access through boto3, imported only when an s3:// URI is used.

Settings come from the standard environment of each process (the job plan
forwards the names in :data:`WORKER_ENV` from the driver to its Ray workers):

* endpoint: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (MinIO, Ceph, R2,
  moto), else the profile's ``endpoint_url``, else AWS;
* region: ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's region;
* addressing style: ``RAYSR_S3_ADDRESSING_STYLE`` (``auto``, ``path``,
  ``virtual``), else the profile's ``s3.addressing_style``.

Credentials come only from the standard chain of the process that makes the
request (environment, profile, web identity, container or instance role):
raysr never passes, stores or prints them, and every error raised here goes
through :func:`redact` (no access key, signature or presigned URL).

Retries: botocore's adaptive mode retries throttling (``SlowDown``, 429), 500,
502, 503, 504, connection resets and timeouts with jittered exponential
backoff, up to :data:`MAX_ATTEMPTS` per request. A GET whose body breaks off
after the headers arrived is outside botocore's retry (the call had returned),
so :func:`read_bytes` retries the whole GET, bounded in attempts and time.
Large writes use multipart upload above :data:`MULTIPART_THRESHOLD`.
"""

from __future__ import annotations

import io
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

MAX_ATTEMPTS = 10  # per HTTP request, botocore's and pyarrow's retry
READ_ATTEMPTS = 5  # whole GETs, when a body breaks off mid-stream
READ_DEADLINE_S = 300.0
MULTIPART_THRESHOLD = 16 * 1024 * 1024  # bytes; S3 allows 5 MiB..5 GiB parts and 10,000 of them
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
PAGE_SIZE = 1000  # keys per ListObjectsV2 page (S3's maximum)
ADDRESSING_STYLES = ("auto", "path", "virtual")

#: Environment variables that tell a process which store to reach and where its
#: credentials are. Names and locations only, never secrets: the plan forwards
#: these from the driver to the Ray workers (a Ray runtime_env is visible in the
#: dashboard). Profiles and files named here must exist on every node.
WORKER_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_REGION", "AWS_DEFAULT_REGION", "RAYSR_S3_ADDRESSING_STYLE",
    "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)

_NOT_FOUND = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
_DENIED = {"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
           "ExpiredToken", "InvalidToken", "AllAccessDisabled"}
_REDACTIONS = (
    # presigned URLs (SigV4 and SigV2 query strings) and Authorization headers
    (re.compile(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"'<>]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"\b(Signature|AWSAccessKeyId|Credential)=[^&\s,\"'<>]+"), r"\1=***"),
    # access key ids
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"), "***"),
)

T = TypeVar("T")
_CLIENTS: dict[tuple, tuple] = {}  # settings → (boto3 session, client)
_CLIENTS_LOCK = threading.Lock()


class S3Error(OSError):
    """An S3 request failed after its retries; the message names the URI and S3's error code."""

    kind = "s3_error"


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, key


# -- settings and clients -----------------------------------------------------

def endpoint_url() -> str | None:
    """The endpoint override from the environment (S3-specific first), or ``None`` for AWS."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION`` (botocore alone reads only the latter)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def addressing_style() -> str | None:
    style = os.environ.get("RAYSR_S3_ADDRESSING_STYLE", "").strip().lower() or None
    if style is not None and style not in ADDRESSING_STYLES:
        raise ValueError(f"RAYSR_S3_ADDRESSING_STYLE must be one of {ADDRESSING_STYLES}, got {style!r}")
    return style


def client():
    """The S3 client for the current environment (one per distinct setting, reused; thread-safe)."""
    key = tuple(os.environ.get(name) for name in WORKER_ENV)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = _new_client()
        return _CLIENTS[key][1]


def _new_client():
    import boto3
    from botocore.config import Config

    options = {"retries": {"max_attempts": MAX_ATTEMPTS, "mode": "adaptive"},
               "connect_timeout": 10, "read_timeout": 60}
    if addressing_style():
        options["s3"] = {"addressing_style": addressing_style()}
    if endpoint_url():
        # S3-compatible stores (older MinIO, Ceph, R2) refuse the CRC trailers boto3
        # sends by default since 1.36; send checksums only where an API requires them.
        options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    # A session per client: boto3's default session is not safe to build clients from in threads.
    session = boto3.session.Session()
    return session, session.client("s3", region_name=region(), config=Config(**options))


def arrow_filesystem(uri: str):
    """A ``pyarrow.fs.S3FileSystem`` and path for ``uri``, with the same endpoint, region and
    addressing as :func:`client`, pyarrow's standard retry, and the standard credential chain.

    Built explicitly rather than by ``FileSystem.from_uri``: pyarrow < 16 ignores
    ``AWS_ENDPOINT_URL*`` and ``from_uri`` sets no retry policy.
    """
    import pyarrow.fs as pafs

    bucket, key = split_uri(uri)
    options: dict = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
                     "connect_timeout": 10, "request_timeout": 60}
    endpoint = endpoint_url()
    if endpoint is None:  # an endpoint_url in the profile: the one boto3 resolved, unless it is AWS's
        resolved = client().meta.endpoint_url
        if not (urlsplit(resolved).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn")):
            endpoint = resolved
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    chosen = region() or _profile_region()
    if chosen is None and endpoint is None:
        chosen = pafs.resolve_s3_region(bucket)
    options["region"] = chosen or "us-east-1"
    if addressing_style() == "virtual":
        options["force_virtual_addressing"] = True
    return pafs.S3FileSystem(**options), f"{bucket}/{key}".rstrip("/")


def _profile_region() -> str | None:
    import boto3

    return boto3.session.Session().region_name


# -- errors -------------------------------------------------------------------

def redact(text: str) -> str:
    """``text`` without credentials: signatures, presigned-URL queries, access key ids, and
    the literal values of the credentials this process holds."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    for secret in _held_secrets():
        text = text.replace(secret, "***")
    return text


def _held_secrets() -> list[str]:
    values = [os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")]
    with _CLIENTS_LOCK:
        sessions = [session for session, _ in _CLIENTS.values()]
    for session in sessions:  # credentials the clients already resolved (profile file, role)
        try:
            credentials = session.get_credentials()
            if credentials is not None:
                values += [credentials.access_key, credentials.secret_key, credentials.token]
        except Exception:  # noqa: BLE001 - redaction must never raise
            pass
    return [value for value in values if value and len(value) >= 8]


def _translate(error: BaseException, uri: str, operation: str) -> OSError:
    """A botocore/s3transfer error → FileNotFoundError, PermissionError or :class:`S3Error`."""
    from botocore.exceptions import ClientError

    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        message = redact(f"{uri}: {operation} failed: {code}: {details.get('Message') or 'no message'}")
        if code in _NOT_FOUND:
            return FileNotFoundError(message)
        if code in _DENIED:
            return PermissionError(f"{message}; check the credentials of this node's standard chain "
                                   "(environment, profile, role) and the bucket policy")
        return S3Error(message)
    return S3Error(redact(f"{uri}: {operation} failed: {type(error).__name__}: {error}"))


def _broken_body_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import ProtocolError
    from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

    return (IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ProtocolError, Urllib3ReadTimeout,
            ConnectionError)


def _storage_errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error, ConnectionError, *_broken_body_errors())


def _call(uri: str, operation: str, request: Callable[[], T], attempts: int = 1) -> T:
    """Run ``request``; retry it whole on a broken response body (up to ``attempts`` times
    and :data:`READ_DEADLINE_S`, jittered exponential backoff); translate storage failures
    (other exceptions, e.g. a bad setting, pass unchanged)."""
    retryable = _broken_body_errors() if attempts > 1 else ()
    failures = _storage_errors()
    deadline = time.monotonic() + READ_DEADLINE_S
    for attempt in range(1, attempts + 1):
        try:
            return request()
        except retryable as error:
            if attempt == attempts or time.monotonic() >= deadline:
                raise _translate(error, uri, operation) from None
            time.sleep(random.uniform(0, min(8.0, 0.25 * 2**attempt)))
        except failures as error:  # translated, secrets removed, cause dropped
            raise _translate(error, uri, operation) from None
    raise AssertionError("unreachable")


# -- objects ------------------------------------------------------------------

def read_bytes(uri: str) -> bytes:
    """The object's bytes. Raises FileNotFoundError (no such key or bucket), PermissionError, S3Error."""
    bucket, key = split_uri(uri)

    def get() -> bytes:
        # botocore's StreamingBody checks the length against Content-Length (IncompleteReadError).
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()

    return _call(uri, "GET", get, attempts=READ_ATTEMPTS)


def download_file(uri: str, path: str | Path) -> None:
    """Copy an object to a local file (ranged, retried GETs by boto3's transfer manager)."""
    bucket, key = split_uri(uri)
    _call(uri, "download", lambda: client().download_file(bucket, key, str(path)))


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE,
                          max_concurrency=4)


def write_bytes(uri: str, data: bytes) -> int:
    """PUT ``data`` (multipart above :data:`MULTIPART_THRESHOLD`); return the size HEAD confirms.

    An object store publishes a PUT (or a completed multipart upload) atomically:
    readers see the old object or the new one, never part of it.
    """
    bucket, key = split_uri(uri)
    _call(uri, "PUT", lambda: client().upload_fileobj(io.BytesIO(data), bucket, key, Config=_transfer_config()))
    confirmed = size_of(uri)
    if confirmed != len(data):
        raise S3Error(f"{uri}: uploaded {len(data)} bytes but HEAD reports {confirmed}")
    return confirmed


def upload_file(path: str | Path, uri: str) -> int:
    """PUT a local file (multipart, streamed from disk: a film never sits in memory); the size HEAD confirms."""
    bucket, key = split_uri(uri)
    expected = os.path.getsize(path)
    _call(uri, "PUT", lambda: client().upload_file(str(path), bucket, key, Config=_transfer_config()))
    confirmed = size_of(uri)
    if confirmed != expected:
        raise S3Error(f"{uri}: uploaded {expected} bytes but HEAD reports {confirmed}")
    return confirmed


def size_of(uri: str) -> int | None:
    """The object's size, or ``None`` when it does not exist."""
    bucket, key = split_uri(uri)
    try:
        return _call(uri, "HEAD", lambda: int(client().head_object(Bucket=bucket, Key=key)["ContentLength"]))
    except FileNotFoundError:
        return None


def list_prefix(uri: str, page_size: int = PAGE_SIZE) -> Iterator[tuple[str, int]]:
    """Yield (key, size) under a prefix, one page at a time (never the whole listing at once)."""
    for entry in _list_entries(uri, page_size):
        yield entry["Key"], int(entry["Size"])


def _list_entries(uri: str, page_size: int = PAGE_SIZE) -> Iterator[dict]:
    """The raw listing entries (Key, Size, ETag, LastModified …) under a prefix, page by page."""
    bucket, prefix = split_uri(uri)
    pages = client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    iterator = iter(pages)
    while True:
        page = _call(uri, "LIST", lambda: next(iterator, None))
        if page is None:
            return
        yield from page.get("Contents", [])


def list_items(uri: str, extensions: tuple[str, ...], page_size: int = PAGE_SIZE):
    """Yield :class:`~raysr.sources.listing.InputItem` for one object or every object under a prefix.

    As for local paths: a URI naming an existing object lists that object
    (whatever its extension); otherwise it is a folder (``s3://b/scans`` and
    ``s3://b/scans/`` both mean the keys under ``scans/``), listed page by page in
    key order, filtered by extension (case-insensitive). ``relative`` is the key
    below the folder, unchanged: a key such as ``scans/../x.png`` or
    ``scans//x.png`` keeps its ``..`` or empty part, so mapping it to an output
    (:func:`raysr.sinks.write.output_relpath`) refuses it and the item becomes an
    error row, never a write outside the output prefix.

    Raises:
        FileNotFoundError: no object has one of ``extensions`` under the prefix.
    """
    from raysr.sources.listing import InputItem

    bucket, prefix = split_uri(uri)
    if prefix and not prefix.endswith("/"):
        size = size_of(uri)
        if size is not None:
            yield InputItem(uri, prefix.rsplit("/", 1)[-1], size)
            return
        prefix += "/"
    suffixes = tuple(extension.lower() for extension in extensions)
    found = 0
    for entry in _list_entries(f"s3://{bucket}/{prefix}", page_size):
        key = entry["Key"]
        if key.endswith("/") or not key.lower().endswith(suffixes):
            continue
        found += 1
        etag = entry.get("ETag")
        yield InputItem(f"s3://{bucket}/{key}", key[len(prefix):], int(entry["Size"]),
                        f"etag={etag.strip(chr(34))}" if etag else None)
    if not found:
        raise FileNotFoundError(
            f"input {uri!r} holds no object with one of the extensions {', '.join(suffixes)}; "
            "check the bucket, the prefix and the extensions setting"
        )


def create_exclusive(uri: str, data: bytes) -> bool:
    """PUT only if no object exists at ``uri`` (S3 conditional write); False when one does."""
    from botocore.exceptions import ClientError

    bucket, key = split_uri(uri)
    try:
        client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return False
        raise _translate(error, uri, "PUT") from None
    return True


def delete(uri: str) -> None:
    bucket, key = split_uri(uri)
    _call(uri, "DELETE", lambda: client().delete_object(Bucket=bucket, Key=key))
