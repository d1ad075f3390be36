import cv2
import pyarrow as pa

from raysr.job.spec import parse_spec
from raysr.manifest import new_row
from raysr.stages._batch import rows_of
from raysr.stages.read import ProbeStage, ReadBytesStage, attach_last_outcomes


def _spec(tmp_path, **extra):
    return parse_spec({"name": "t", "inputs": [str(tmp_path / "in")], "output": {"path": str(tmp_path / "out")}, **extra})


def _listing(tmp_path, names):
    uris = [str(tmp_path / "in" / name) for name in names]
    return pa.table({"item_id": [f"id-{name}" for name in names], "input_uri": uris, "relative": list(names)})


def _write(tmp_path, name, pixels):
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), pixels)
    return path


def test_probe_routes_hashes_and_maps_outputs(tmp_path, photo):
    _write(tmp_path, "p.jpg", photo[:64, :64])
    _write(tmp_path, "art/d.png", photo[:64, :64])
    spec = _spec(tmp_path, route_overrides=[{"glob": "art/*", "route": "anime"}])
    rows = rows_of(ProbeStage(spec, {"photo": "w1", "anime": "w2"})(_listing(tmp_path, ["p.jpg", "art/d.png"])))
    photo_row, art_row = rows
    assert photo_row["status"] is None and photo_row["route"] == "photo" and photo_row["width"] == 64
    assert photo_row["output_uri"].endswith("/out/p.png") and len(photo_row["input_sha256"]) == 64
    assert art_row["route"] == "anime" and "art/*" in art_row["route_reason"]
    assert "data" not in photo_row, "the probe never carries image bytes"


def test_probe_skips_unchanged_done_items_only(tmp_path, photo):
    path = _write(tmp_path, "p.png", photo[:40, :40])
    spec = _spec(tmp_path)
    first = rows_of(ProbeStage(spec, {"photo": "w1"})(_listing(tmp_path, ["p.png"])))[0]
    output = tmp_path / "out" / "p.png"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"x" * 10)
    done = pa.Table.from_pylist([new_row(**{k: first[k] for k in ("item_id", "input_sha256", "settings_hash", "output_uri")},
                                         status="ok", weights_sha256="w1", output_size=10, run_id="r1")])
    listing = attach_last_outcomes(_listing(tmp_path, ["p.png"]), done)
    probe = ProbeStage(spec, {"photo": "w1"})
    assert rows_of(probe(listing))[0]["skip_reason"] == "unchanged since run r1"
    # A new model (weights digest) or a missing output means redo.
    assert rows_of(ProbeStage(spec, {"photo": "w2"})(listing))[0]["status"] is None
    output.write_bytes(b"x" * 9)
    assert rows_of(probe(listing))[0]["status"] is None
    assert path.exists()


def test_missing_and_unreadable_inputs_are_error_rows(tmp_path):
    (tmp_path / "in").mkdir()
    row = rows_of(ProbeStage(_spec(tmp_path), {})(_listing(tmp_path, ["gone.png"])))[0]
    assert row["status"] == "error" and row["error_type"] == "missing" and "re-run" in row["error_message"]


def test_reread_detects_changed_content(tmp_path, photo):
    path = _write(tmp_path, "p.png", photo[:40, :40])
    batch = pa.table({"input_uri": [str(path)], "input_sha256": ["0" * 64], "status": pa.array([None], pa.string())})
    row = rows_of(ReadBytesStage()(batch))[0]
    assert row["status"] == "error" and row["error_type"] == "input_changed"


def test_listing_version_skips_without_reading(tmp_path, photo):
    """Same size and mtime as the last successful run → skipped without reading the bytes."""
    import os

    path = _write(tmp_path, "p.png", photo[:40, :40])
    spec = _spec(tmp_path)
    info = path.stat()
    listing = _listing(tmp_path, ["p.png"]).append_column("listed_size", pa.array([info.st_size], pa.int64())) \
        .append_column("input_version", pa.array([f"mtime_ns={info.st_mtime_ns}"]))
    first = rows_of(ProbeStage(spec, {"photo": "w1"})(listing))[0]
    output = tmp_path / "out" / "p.png"
    output.parent.mkdir()
    output.write_bytes(b"x" * 10)
    done = pa.Table.from_pylist([new_row(**{k: first[k] for k in ("item_id", "input_sha256", "settings_hash", "output_uri",
                                                                   "input_version", "input_size", "route", "model", "kind")},
                                         status="ok", weights_sha256="w1", output_size=10, run_id="r1")])
    # Same size, same mtime, other bytes: the shortcut trusts the store and does not read.
    path.write_bytes(b"\0" * info.st_size)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    listing = attach_last_outcomes(listing, done)
    row = rows_of(ProbeStage(spec, {"photo": "w1"})(listing))[0]
    assert row["status"] == "skipped" and "not re-read" in row["skip_reason"]
    assert row["input_sha256"] == first["input_sha256"]
    # Another output folder, or another model, is not "unchanged".
    moved = _spec(tmp_path, output={"path": str(tmp_path / "elsewhere")})
    assert rows_of(ProbeStage(moved, {"photo": "w1"})(listing))[0]["status"] != "skipped"
    assert rows_of(ProbeStage(spec, {"photo": "w2"})(listing))[0]["status"] != "skipped"


def test_cpu_stages_load_without_torch():
    # Ray workers that only read, hash, colour-correct, score or encode files start without
    # importing torch and spandrel (seconds per worker, and the probe pass is all such workers).
    import subprocess
    import sys

    code = ("import sys, raysr, raysr.stages.read, raysr.stages.write, raysr.stages.color, raysr.stages.metrics; "
            "heavy = {'torch', 'spandrel'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_last_outcomes_join_onto_the_listing_in_its_order(tmp_path):
    listing = _listing(tmp_path, ["a.png", "b.png", "c.png"])
    done = pa.Table.from_pylist([new_row(item_id="id-c.png", status="error", run_id="r2"),
                                 new_row(item_id="id-gone.png", status="ok", run_id="r1"),
                                 new_row(item_id="id-a.png", status="ok", run_id="r1", output_size=7)])
    joined = attach_last_outcomes(listing, done)
    assert joined.column("item_id").to_pylist() == ["id-a.png", "id-b.png", "id-c.png"]
    assert joined.column("last_status").to_pylist() == ["ok", None, "error"]
    assert joined.column("last_output_size").to_pylist() == [7, None, None]
    assert attach_last_outcomes(listing, None).equals(listing)
    assert attach_last_outcomes(listing, done.slice(0, 0)).equals(listing)


def test_retry_failed_only_probes_only_last_errors(tmp_path, photo):
    for name in ("a.png", "b.png", "c.png"):
        _write(tmp_path, name, photo[:40, :40])
    done = pa.Table.from_pylist([new_row(item_id="id-a.png", status="error", run_id="r1"),
                                 new_row(item_id="id-b.png", status="ok", run_id="r1")])
    spec = _spec(tmp_path, retry_failed_only=True)
    rows = rows_of(ProbeStage(spec, {"photo": "w1"})(attach_last_outcomes(_listing(tmp_path, ["a.png", "b.png", "c.png"]), done)))
    assert [row["status"] for row in rows] == [None, "skipped", "skipped"]
    assert all("last_status" not in row for row in rows), "history stays out of the probe's output"
