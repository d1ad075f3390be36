"""A real S3 API on loopback for tests: moto's server, fake credentials, and a
fault-injecting HTTP proxy in front of it. No boto3 call is mocked.

Use from a test module::

    from s3_fixtures import s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401

``s3_env`` (per module) points the environment at the session's proxy, which
forwards to moto and injects faults only inside ``with s3_proxy.faults_on(...)``.
Every S3 test thus has one endpoint, so the Ray workers a job starts for it
(one set per distinct runtime_env) are reused by the next job.

The credentials are fake and planted so a test can look for them: the access
key and :data:`PLANTED_SECRET` are in the test process's environment and in a
shared-credentials file named by ``AWS_SHARED_CREDENTIALS_FILE``. Ray workers
of the session's cluster (started before these fixtures) do not inherit the
environment; raysr forwards the non-secret names (endpoint, region, file
locations) and each worker reads the credentials from that file, its own chain.
All traffic stays on 127.0.0.1; every loop and wait here is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import logging
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

ACCESS_KEY = "raysr-test-access-key-0001"
PLANTED_SECRET = "raysr-PLANTED-secret-4b1d5e0c-never-print-me"
REGION = "us-east-1"
FAULT_KINDS = ("500", "503", "slowdown", "slow", "reset", "truncate")

_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
           "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
           "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED", "RAYSR_S3_ADDRESSING_STYLE",
           "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_proxy(s3_server):
    """A :class:`FaultProxy` in front of moto for the whole session, injecting nothing until asked."""
    with FaultProxy(s3_server) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def s3_env(s3_proxy, tmp_path_factory):
    """The test process's environment pointed at the proxy (so at moto) with fake, planted
    credentials, for one test module; restored after it. Yields the endpoint URL."""
    folder = tmp_path_factory.getbasetemp() / "aws"  # one per session, whichever module comes first
    folder.mkdir(exist_ok=True)
    credentials, config = folder / "credentials", folder / "config"
    credentials.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {PLANTED_SECRET}\n")
    config.write_text(f"[default]\nregion = {REGION}\n")
    with pytest.MonkeyPatch.context() as patch:
        for name in _S3_ENV:
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ENDPOINT_URL", s3_proxy.url)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
        patch.setenv("AWS_CONFIG_FILE", str(config))
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", PLANTED_SECRET)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe 169.254.169.254
        yield s3_proxy.url


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A fresh, empty bucket on the moto server (its name)."""
    from raysr.sources.s3 import client

    name = f"raysr-{uuid.uuid4().hex[:12]}"
    client().create_bucket(Bucket=name)
    return name


# -- fault injection ------------------------------------------------------------

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "expect", "proxy-authorization", "proxy-authenticate"}
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Please reduce your request rate."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that can fail some requests.

    It injects nothing until :meth:`faults_on` (or ``rate`` given here) switches it on.
    Then one request in every ``round(1 / rate)`` (from a seeded offset), while
    fewer than ``max_faults`` were injected, gets a fault; the faults take turns
    through ``kinds`` (seeded order), so N requests meet about N·rate faults of every kind:

    * ``500``, ``503``, ``slowdown``: an S3 XML error (``InternalError``,
      ``ServiceUnavailable``, ``SlowDown``); the request never reaches the store;
    * ``slow``: forwarded after a 0.2-0.6 s pause;
    * ``reset``: the body is read, then the connection is reset (TCP RST), no reply;
    * ``truncate`` (GETs only): the store's reply with every header but half the
      body, then a reset; drawn for a reply with nothing to cut (an error status, an
      empty body), it is not counted and the next GET is truncated instead.

    Only faults that the request never reached the store (or read-only GETs) are
    injected, as a real store's 5xx or a dropped connection would; ``faults``
    counts them by kind and ``requests`` counts every request.

    Args:
        upstream: the store's endpoint, ``http://127.0.0.1:PORT``.
        rate, seed, max_faults, kinds: as for :meth:`faults_on`; ``rate`` 0 injects nothing.
    """

    def __init__(self, upstream: str, rate: float = 0.0, seed: int = 0, max_faults: int = 100,
                 kinds: tuple[str, ...] = FAULT_KINDS) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        if host != "127.0.0.1":
            raise ValueError(f"the proxy forwards to 127.0.0.1 only, got {upstream}")
        self.upstream = (host, int(port))
        self._lock = threading.Lock()
        self._configure(rate, seed, max_faults, kinds)
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def _configure(self, rate: float, seed: int, max_faults: int, kinds: tuple[str, ...]) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds or not 0 <= rate <= 1:
            raise ValueError(f"kinds must be from {FAULT_KINDS} and rate in [0, 1], got {kinds}, {rate}")
        with self._lock:
            self.faults: Counter = Counter()
            self._truncate_owed = False
            self.requests = 0
            self.max_faults = max_faults if rate > 0 else 0
            self._random = random.Random(seed)
            self._period = max(1, round(1 / rate)) if rate > 0 else 1
            self._offset = self._random.randrange(self._period)
            self._turns = self._random.sample(list(kinds), len(kinds))

    @contextlib.contextmanager
    def faults_on(self, rate: float = 0.1, seed: int = 0, max_faults: int = 100,
                  kinds: tuple[str, ...] = FAULT_KINDS) -> Iterator[FaultProxy]:
        """Inject faults inside the block (counters start at zero; they stay readable after)."""
        self._configure(rate, seed, max_faults, kinds)
        try:
            yield self
        finally:
            with self._lock:
                self.max_faults = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def draw(self, method: str) -> str | None:
        """The fault for the next request, or None; counted."""
        with self._lock:
            index = self.requests
            self.requests += 1
            if self._truncate_owed and method == "GET" and self.max_faults > 0:
                self._truncate_owed = False  # owed by a truncation that found nothing to cut
                self.faults["truncate"] += 1
                return "truncate"
            if self.total_faults >= self.max_faults or index % self._period != self._offset:
                return None
            # The first kind in turn that fits this request (``truncate`` waits for a GET).
            kind = next((kind for kind in self._turns if kind != "truncate" or method == "GET"), None)
            if kind is None:
                return None
            self._turns.remove(kind)
            self._turns.append(kind)
            self.faults[kind] += 1
            return kind

    def pause(self) -> float:
        with self._lock:
            return self._random.uniform(0.2, 0.6)

    def truncate_later(self) -> None:
        """The drawn truncation met a reply with nothing to cut (an error status, an empty
        body): uncount it and truncate the next GET instead, so every kind still happens."""
        with self._lock:
            self.faults["truncate"] -= 1
            self._truncate_owed = True


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy
    timeout = 30  # seconds a client connection may idle or stall

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            for _ in range(1_000_000):  # bounded: a chunk per iteration
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed balancer would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            if self.command in ("GET", "HEAD", "DELETE") and not body:
                headers.pop("Content-Length")
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, truncate: bool = False) -> None:
        self.send_response_only(status)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and not (key.lower() == "content-length" and self.command != "HEAD"):
                self.send_header(key, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        kind = self.owner.draw(self.command)
        if kind in _ERRORS:
            status, code, message = _ERRORS[kind]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                   f"<RequestId>raysr-fault</RequestId></Error>").encode()
            self._send(status, [("Content-Type", "application/xml")], xml)
            return
        if kind == "reset":
            self._reset()
            return
        if kind == "slow":
            time.sleep(self.owner.pause())
        status, headers, reply = self._forward(body)
        if kind == "truncate" and (status != 200 or len(reply) < 2):
            self.owner.truncate_later()  # nothing to cut here: the next GET is cut instead
            kind = None
        self._send(status, headers, reply, truncate=kind == "truncate")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle
