"""Hugging Face hub snapshots (diffusers models) in the raysr weights cache.

A diffusers model is a folder (``model_index.json`` plus one subfolder per
component), not one file, so it is cached in exactly the layout
``huggingface_hub`` uses::

    <weights_dir>/hub/models--stabilityai--stable-diffusion-x4-upscaler/
        refs/main                      the revision ``main`` points to
        blobs/<digest>                 file contents
        snapshots/<revision>/unet/…    relative symlinks into blobs/ (copies where links fail)

so ``huggingface-cli download --cache-dir <weights_dir>/hub`` and
``HF_HUB_CACHE=<weights_dir>/hub`` fill and read the same cache. Jobs only ever
*resolve* (offline, no network); :func:`fetch_snapshot` is for
``raysr weights fetch`` on a machine with hub access, and :func:`import_snapshot`
copies a plain diffusers folder in for air-gapped clusters.

Provenance: the snapshot's ``sha256`` is a digest over the sorted
``(relative path, file sha256)`` list, recorded as the model's weights sha256.
File digests are remembered in ``<weights_dir>/.hub-digests/`` by size and
mtime, so resolving a multi-GB snapshot twice hashes it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from raysr.weights.resolve import ResolvedWeights, WeightsError, default_weights_dir, sha256_file

HUB_SUBDIR = "hub"
MODEL_INDEX = "model_index.json"
# What `raysr weights fetch` takes of a diffusers repo: configs, tokenizer files and the
# fp32 safetensors of each component; not the .bin/.fp16 duplicates or the root .ckpt.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    MODEL_INDEX,
    "*/*.json",
    "*/*.txt",
    "*/model.safetensors",
    "*/diffusion_pytorch_model.safetensors",
)
_DIGESTS_SUBDIR = ".hub-digests"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ResolvedSnapshot:
    """A diffusers snapshot found in the weights cache.

    Attributes:
        repo_id: hub repository (``stabilityai/stable-diffusion-x4-upscaler``).
        path: the snapshot folder, ready for ``DiffusionPipeline.from_pretrained``.
        revision: commit hash of the snapshot (a content digest for imported folders).
        sha256: digest over the sorted ``(relative path, file sha256)`` list.
        model_index_sha256: sha256 of ``model_index.json``.
        files: ``(relative path, sha256)`` of every file, sorted.
    """

    repo_id: str
    path: Path
    revision: str
    sha256: str
    model_index_sha256: str
    files: tuple[tuple[str, str], ...]

    def to_resolved_weights(self) -> ResolvedWeights:
        """The snapshot as the manifest's weights provenance (``weights_sha256``, ``weights_source``)."""
        return ResolvedWeights(self.path, self.sha256, f"hub:{self.repo_id}@{self.revision}", "fp32", False)


def hub_cache_dir(weights_dir: str | Path | None = None) -> Path:
    """``<weights_dir>/hub``: the ``cache_dir`` handed to ``huggingface_hub``."""
    return (Path(weights_dir) if weights_dir else default_weights_dir()) / HUB_SUBDIR


def repo_cache_dir(repo_id: str, weights_dir: str | Path | None = None) -> Path:
    """``<weights_dir>/hub/models--<org>--<name>``, as ``huggingface_hub`` names it.

    Example:
        >>> repo_cache_dir("stabilityai/stable-diffusion-x4-upscaler", "/w").as_posix()
        '/w/hub/models--stabilityai--stable-diffusion-x4-upscaler'
    """
    if not repo_id or repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise WeightsError(f"hub repo id must look like 'org/name', got {repo_id!r}")
    return hub_cache_dir(weights_dir) / ("models--" + repo_id.replace("/", "--"))


def _snapshot_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files under ``folder``; hidden entries (``.cache/``) skipped."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.startswith(".") and (Path(root) / name).is_file():
                found.append((Path(root) / name).relative_to(folder).as_posix())
    return sorted(found)


def snapshot_digest(folder: str | Path, record: str | Path | None = None) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Digest a diffusers folder: sha256 over the sorted ``"<path>\\t<sha256>\\n"`` lines.

    Args:
        folder: snapshot or plain diffusers folder.
        record: optional JSON file remembering file digests by size and mtime;
            read if present, rewritten (atomically) when anything changed.

    Returns:
        ``(digest, ((relative path, sha256), ...))``, sorted by path.
    """
    folder = Path(folder)
    known: dict = {}
    if record is not None and Path(record).is_file():
        try:
            known = json.loads(Path(record).read_text()).get("files", {})
        except (OSError, ValueError):
            known = {}
    entries: dict[str, list] = {}
    for rel in _snapshot_files(folder):
        stat = (folder / rel).stat()
        cached = known.get(rel)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            entries[rel] = cached
        else:
            entries[rel] = [stat.st_size, stat.st_mtime_ns, sha256_file(folder / rel)]
    files = tuple((rel, entry[2]) for rel, entry in sorted(entries.items()))
    digest = hashlib.sha256("".join(f"{rel}\t{sha}\n" for rel, sha in files).encode()).hexdigest()
    if record is not None and entries != known:
        record = Path(record)
        record.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"sha256": digest, "files": entries}, indent=1, sort_keys=True)
        handle, tmp = tempfile.mkstemp(dir=record.parent, prefix=".part-")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, record)
    return digest, files


def _missing(repo_id: str, weights_dir: str | Path | None, looked: list[str]) -> WeightsError:
    repo = repo_cache_dir(repo_id, weights_dir)
    lines = "\n  ".join(looked)
    return WeightsError(
        f"no diffusers snapshot of {repo_id} in the weights cache (nothing is downloaded at run time). "
        f"Looked in:\n  {lines}\n"
        f"Fix: on a machine with hub access run `raysr weights fetch {repo_id}` with the same weights dir "
        f"(or `huggingface-cli download {repo_id} --cache-dir {hub_cache_dir(weights_dir)}`), then copy "
        f"{repo} to this machine; or import a local diffusers folder (model_index.json + subfolders) "
        f"with `raysr weights fetch {repo_id} --source FOLDER`."
    )


def resolve_snapshot(
    repo_id: str,
    weights_dir: str | Path | None = None,
    revision: str | None = None,
    expected_sha256: str | None = None,
) -> ResolvedSnapshot:
    """Find a diffusers snapshot in the weights cache, offline, and digest it.

    Args:
        repo_id: hub repository, ``org/name``.
        weights_dir: the cache; default :func:`~raysr.weights.resolve.default_weights_dir`.
        revision: a branch/tag with a ``refs/`` file or a 40-hex commit; ``None`` means
            ``main`` (or the only snapshot when ``refs/main`` was not copied along).
        expected_sha256: optional pin of the snapshot digest.

    Returns:
        The snapshot, with its provenance digests.

    Raises:
        WeightsError: naming every place looked in and how to fill the cache.

    Example:
        >>> snap = resolve_snapshot("stabilityai/stable-diffusion-x4-upscaler")  # doctest: +SKIP
        >>> snap.path.name == snap.revision  # doctest: +SKIP
        True
    """
    repo = repo_cache_dir(repo_id, weights_dir)
    snapshots = repo / "snapshots"
    ref_name = revision or "main"
    ref = repo / "refs" / ref_name
    looked: list[str] = []
    commit: str | None = None
    if ref.is_file():
        commit = ref.read_text().strip()
    elif revision and _COMMIT.match(revision):
        commit = revision
    else:
        looked.append(f"{ref}: missing")
        present = sorted(p.name for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
        if revision is None and len(present) == 1:
            commit = present[0]
        else:
            found = f"{len(present)} snapshots, none chosen by a ref" if present else "no snapshot"
            looked.append(f"{snapshots}: {found}")
    if commit is None:
        raise _missing(repo_id, weights_dir, looked)
    folder = snapshots / commit
    if not (folder / MODEL_INDEX).is_file():
        looked.append(f"{folder / MODEL_INDEX}: missing")
        raise _missing(repo_id, weights_dir, looked)
    record = repo.parents[1] / _DIGESTS_SUBDIR / f"{repo.name}@{commit}.json"
    digest, files = snapshot_digest(folder, record)
    if expected_sha256 and digest != expected_sha256:
        raise WeightsError(
            f"{repo_id}: snapshot {folder} has digest {digest}, expected {expected_sha256}; a file is "
            f"missing, truncated or not the pinned one. Delete {folder} and fetch or import it again."
        )
    model_index_sha = dict(files)[MODEL_INDEX]
    return ResolvedSnapshot(repo_id, folder, commit, digest, model_index_sha, files)


def _lock_path(repo: Path) -> Path:
    """``hub/.locks/raysr-<repo folder>.lock``: huggingface_hub's scan skips ``.locks``."""
    locks = repo.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"raysr-{repo.name}.lock"


def _place_blob(source: Path, blobs: Path, sha: str) -> Path:
    """Copy ``source`` to ``blobs/<sha>`` unless it is already there (temp name, then rename)."""
    blob = blobs / sha
    if not blob.is_file():
        handle, tmp = tempfile.mkstemp(dir=blobs, prefix=".part-")
        os.close(handle)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, blob)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return blob


def _link_or_copy(blob: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:  # filesystems without symlinks: huggingface_hub copies too
        shutil.copyfile(blob, link)


def import_snapshot(
    local_dir: str | Path,
    repo_id: str,
    weights_dir: str | Path | None = None,
    revision: str | None = None,
) -> ResolvedSnapshot:
    """Copy a diffusers folder (``save_pretrained`` output, or a copy of a hub snapshot) into the cache.

    Blobs are named by sha256; the snapshot is built under a temporary name and
    renamed into place, then ``refs/main`` is pointed at it, all under a file lock.

    Args:
        local_dir: folder with ``model_index.json`` and the component subfolders.
        repo_id: hub repository the folder stands for (``org/name``).
        weights_dir: the cache; default :func:`~raysr.weights.resolve.default_weights_dir`.
        revision: commit hash to file it under; default the first 40 hex digits of
            the folder's digest, so importing the same files twice is a no-op.

    Returns:
        The snapshot as :func:`resolve_snapshot` finds it afterwards.

    Raises:
        WeightsError: ``local_dir`` is not a diffusers folder.

    Example:
        >>> pipe.save_pretrained("sdx4")  # doctest: +SKIP
        >>> import_snapshot("sdx4", "stabilityai/stable-diffusion-x4-upscaler").revision  # doctest: +SKIP
        '3f1c…'
    """
    source = Path(local_dir).expanduser()
    if not (source / MODEL_INDEX).is_file():
        raise WeightsError(
            f"cannot import {source} as {repo_id}: no {MODEL_INDEX} there; pass the folder a diffusers "
            f"pipeline's save_pretrained wrote (model_index.json + unet/, vae/, …)"
        )
    digest, files = snapshot_digest(source)
    commit = revision or digest[:40]
    if not _COMMIT.match(commit):
        raise WeightsError(f"revision must be a 40-hex commit hash, got {commit!r}")
    repo = repo_cache_dir(repo_id, weights_dir)
    for sub in ("blobs", "snapshots", "refs"):
        (repo / sub).mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(repo))):
        target = repo / "snapshots" / commit
        staging = Path(tempfile.mkdtemp(dir=repo / "snapshots", prefix=".tmp-"))
        try:
            for rel, sha in files:
                _link_or_copy(_place_blob(source / rel, repo / "blobs", sha), staging / rel)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        handle, tmp = tempfile.mkstemp(dir=repo / "refs", prefix=".part-")
        with os.fdopen(handle, "w") as out:
            out.write(commit)
        os.replace(tmp, repo / "refs" / "main")
    return resolve_snapshot(repo_id, weights_dir, revision=commit)


def fetch_snapshot(
    repo_id: str,
    weights_dir: str | Path | None = None,
    allow_patterns: Sequence[str] = DEFAULT_ALLOW_PATTERNS,
    revision: str | None = None,
) -> ResolvedSnapshot:
    """Download a diffusers repo from the hub into the cache (``raysr weights fetch`` only).

    Args:
        repo_id: hub repository, ``org/name``.
        weights_dir: the cache; default :func:`~raysr.weights.resolve.default_weights_dir`.
        allow_patterns: files to take (fnmatch on repo paths); the default skips
            ``.bin``/``.fp16`` duplicates and the original ``.ckpt``.
        revision: branch, tag or commit; default ``main``.

    Returns:
        The downloaded snapshot, resolved and digested.

    Raises:
        WeightsError: ``huggingface_hub`` missing, or the download failed.

    Example:
        >>> fetch_snapshot("stabilityai/stable-diffusion-x4-upscaler")  # doctest: +SKIP
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightsError(
            f"fetching {repo_id} needs huggingface_hub: pip install 'raysr[diffusion]'"
        ) from None
    cache = hub_cache_dir(weights_dir)
    cache.mkdir(parents=True, exist_ok=True)
    repo = repo_cache_dir(repo_id, weights_dir)
    with FileLock(str(_lock_path(repo))):
        try:
            path = snapshot_download(
                repo_id, cache_dir=cache, revision=revision, allow_patterns=list(allow_patterns)
            )
        except Exception as error:  # network, auth, missing repo: huggingface_hub's own error types
            raise WeightsError(
                f"could not download {repo_id} from the hub into {cache}: {type(error).__name__}: {error}. "
                f"Fix: check network access and the repo id, or download elsewhere and copy {repo} here."
            ) from error
    return resolve_snapshot(repo_id, weights_dir, revision=Path(path).name)
