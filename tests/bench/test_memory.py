"""raysr.bench.memory: the peak-memory report's shape on a tiny model (fresh child process)."""

from __future__ import annotations

from factories import rrdbnet_state
from raysr.bench import bench_memory


def test_memory_reports_peak_rss_of_a_fresh_process(save_state):
    model = save_state(rrdbnet_state(num_blocks=1, num_feat=8), "tiny.pth")
    report = bench_memory(str(model), size=48, tile=32, with_official=False)
    assert report["input"] == "48x48" and report["output"] == "192x192"
    assert report["raysr_peak_rss_gib"] > 0.05  # torch alone is more than 50 MiB
    assert report["raysr_image_rss_gib"] >= 0
    assert "official_peak_rss_gib" not in report
