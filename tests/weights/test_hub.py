"""Hub snapshot layout in the weights cache: import, resolve offline, digest, fetch glue.

Nothing here touches the network: ``fetch_snapshot`` is tested against a stand-in
for ``huggingface_hub.snapshot_download``.
"""

import hashlib
import json
import os

import huggingface_hub
import pytest

from raysr.weights import WeightsError, sha256_file
from raysr.weights import hub
from raysr.weights.hub import (
    DEFAULT_ALLOW_PATTERNS,
    fetch_snapshot,
    hub_cache_dir,
    import_snapshot,
    repo_cache_dir,
    resolve_snapshot,
    snapshot_digest,
)

REPO = "stabilityai/stable-diffusion-x4-upscaler"


@pytest.fixture
def diffusers_dir(tmp_path):
    """A small folder in the diffusers layout (contents need not load: only files are handled)."""
    root = tmp_path / "sdx4"
    files = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionUpscalePipeline"}),
        "unet/config.json": '{"sample_size": 128}',
        "unet/diffusion_pytorch_model.safetensors": os.urandom(4096),
        "vae/config.json": '{"latent_channels": 4}',
        "tokenizer/vocab.json": '{"a</w>": 0}',
        ".cache/huggingface/download/unet.metadata": "written by huggingface-cli --local-dir",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def test_repo_folder_is_named_as_huggingface_hub_names_it(tmp_path):
    from huggingface_hub.file_download import repo_folder_name

    expected = repo_folder_name(repo_id=REPO, repo_type="model")
    assert repo_cache_dir(REPO, tmp_path) == tmp_path / "hub" / expected
    assert hub_cache_dir(tmp_path) == tmp_path / "hub"
    with pytest.raises(WeightsError, match="org/name"):
        repo_cache_dir("no-slash", tmp_path)


def test_import_writes_the_hub_layout_and_resolves_offline(tmp_path, diffusers_dir):
    weights = tmp_path / "weights"
    imported = import_snapshot(diffusers_dir, REPO, weights)
    repo = repo_cache_dir(REPO, weights)
    assert (repo / "refs" / "main").read_text() == imported.revision
    assert imported.path == repo / "snapshots" / imported.revision
    link = imported.path / "unet" / "diffusion_pytorch_model.safetensors"
    assert link.is_symlink() and link.resolve().parent == (repo / "blobs").resolve()
    assert link.resolve().name == sha256_file(diffusers_dir / "unet/diffusion_pytorch_model.safetensors")
    # hidden download metadata is not part of the model
    assert [rel for rel, _ in imported.files] == [
        "model_index.json", "tokenizer/vocab.json", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
    ]
    resolved = resolve_snapshot(REPO, weights)
    assert resolved == imported
    assert resolved.model_index_sha256 == sha256_file(diffusers_dir / "model_index.json")
    assert resolved.to_resolved_weights().source == f"hub:{REPO}@{imported.revision}"


def test_digest_is_sha256_over_sorted_path_and_file_digests(diffusers_dir):
    digest, files = snapshot_digest(diffusers_dir)
    lines = "".join(f"{rel}\t{sha256_file(diffusers_dir / rel)}\n" for rel, _ in files)
    assert digest == hashlib.sha256(lines.encode()).hexdigest()
    assert [rel for rel, _ in files] == sorted(rel for rel, _ in files)


def test_import_is_idempotent_and_revision_follows_content(tmp_path, diffusers_dir):
    first = import_snapshot(diffusers_dir, REPO, tmp_path)
    again = import_snapshot(diffusers_dir, REPO, tmp_path)
    assert again.revision == first.revision and again.sha256 == first.sha256
    (diffusers_dir / "unet" / "config.json").write_text('{"changed": true}')
    changed = import_snapshot(diffusers_dir, REPO, tmp_path)
    assert changed.revision != first.revision and changed.sha256 != first.sha256
    assert resolve_snapshot(REPO, tmp_path).revision == changed.revision  # refs/main moved
    assert resolve_snapshot(REPO, tmp_path, revision=first.revision).sha256 == first.sha256


def test_huggingface_hub_reads_the_imported_snapshot(tmp_path, diffusers_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    imported = import_snapshot(diffusers_dir, REPO, tmp_path)
    path = huggingface_hub.snapshot_download(REPO, cache_dir=hub_cache_dir(tmp_path), local_files_only=True)
    assert os.path.samefile(path, imported.path)
    info = huggingface_hub.scan_cache_dir(hub_cache_dir(tmp_path))
    assert not info.warnings and [r.repo_id for r in info.repos] == [REPO]


def test_missing_snapshot_names_where_it_looked_and_the_fix(tmp_path):
    with pytest.raises(WeightsError) as info:
        resolve_snapshot(REPO, tmp_path)
    message = str(info.value)
    assert f"raysr weights fetch {REPO}" in message
    assert str(repo_cache_dir(REPO, tmp_path) / "refs" / "main") in message
    assert "nothing is downloaded at run time" in message


def test_snapshot_copied_without_refs_still_resolves(tmp_path, diffusers_dir):
    imported = import_snapshot(diffusers_dir, REPO, tmp_path)
    (repo_cache_dir(REPO, tmp_path) / "refs" / "main").unlink()
    assert resolve_snapshot(REPO, tmp_path).revision == imported.revision


def test_snapshot_without_model_index_is_refused(tmp_path, diffusers_dir):
    imported = import_snapshot(diffusers_dir, REPO, tmp_path)
    (imported.path / "model_index.json").unlink()
    with pytest.raises(WeightsError, match="model_index.json: missing"):
        resolve_snapshot(REPO, tmp_path)


def test_import_refuses_a_folder_that_is_not_diffusers(tmp_path):
    with pytest.raises(WeightsError, match="no model_index.json"):
        import_snapshot(tmp_path, REPO, tmp_path / "weights")


def test_pinned_digest_is_checked(tmp_path, diffusers_dir):
    imported = import_snapshot(diffusers_dir, REPO, tmp_path)
    assert resolve_snapshot(REPO, tmp_path, expected_sha256=imported.sha256).sha256 == imported.sha256
    with pytest.raises(WeightsError, match="expected 0000"):
        resolve_snapshot(REPO, tmp_path, expected_sha256="0" * 64)


def test_file_digests_are_remembered_and_refreshed_on_change(tmp_path, diffusers_dir, monkeypatch):
    imported = import_snapshot(diffusers_dir, REPO, tmp_path)
    calls = []
    monkeypatch.setattr(hub, "sha256_file", lambda path: calls.append(path) or sha256_file(path))
    assert resolve_snapshot(REPO, tmp_path).sha256 == imported.sha256
    assert calls == []  # every file digest came from the record
    blob = (imported.path / "unet" / "config.json").resolve()
    blob.write_text('{"edited": "in place"}')
    assert resolve_snapshot(REPO, tmp_path).sha256 != imported.sha256
    assert len(calls) == 1


def test_default_patterns_take_fp32_safetensors_and_configs_only():
    listing = [
        ".gitattributes", "README.md", "low_res_img.png", "model_index.json",
        "x4-upscaler-ema.ckpt", "x4-upscaler-ema.safetensors",
        "low_res_scheduler/scheduler_config.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
        "text_encoder/pytorch_model.bin", "tokenizer/merges.txt", "tokenizer/vocab.json",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    ]
    taken = set(huggingface_hub.utils.filter_repo_objects(listing, allow_patterns=list(DEFAULT_ALLOW_PATTERNS)))
    assert taken == {
        "model_index.json", "low_res_scheduler/scheduler_config.json", "scheduler/scheduler_config.json",
        "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/merges.txt",
        "tokenizer/vocab.json", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    }


def test_fetch_downloads_into_the_hub_cache_dir(tmp_path, diffusers_dir, monkeypatch):
    seen = {}
    downloaded = import_snapshot(diffusers_dir, REPO, tmp_path)  # what the download would leave

    def fake_snapshot_download(repo_id, *, cache_dir, revision, allow_patterns):
        seen.update(repo_id=repo_id, cache_dir=cache_dir, allow_patterns=allow_patterns)
        return str(downloaded.path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    fetched = fetch_snapshot(REPO, tmp_path)
    assert seen == {"repo_id": REPO, "cache_dir": tmp_path / "hub", "allow_patterns": list(DEFAULT_ALLOW_PATTERNS)}
    assert fetched == resolve_snapshot(REPO, tmp_path)


def test_fetch_failure_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(WeightsError, match=f"could not download {REPO}.*network unreachable.*copy"):
        fetch_snapshot(REPO, tmp_path)
