import datetime as dt
import logging
import shutil

import pyarrow as pa
import pytest

from raysr.manifest import (
    COLUMNS,
    SCHEMA,
    ManifestWriter,
    latest_rows,
    new_row,
    read_manifest,
)


def _at(second: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 0, 0, second, tzinfo=dt.timezone.utc)


def test_schema_round_trip_through_parquet(tmp_path):
    writer = ManifestWriter(str(tmp_path / "m"), job_id="job", run_id="r1", rows_per_part=2)
    rows = [
        new_row(item_id=f"i{n}", input_uri=f"/in/{n}.png", status="ok", width=10, height=12, lr_psnr=33.5,
                started_at=_at(0), finished_at=_at(n + 1), upscale_s=0.5 * n)
        for n in range(5)
    ]
    for row in rows:
        writer.append([row])  # a part file every 2 rows
    writer.flush()
    table = read_manifest(str(tmp_path / "m"))
    assert table.num_rows == 5 and tuple(table.column_names) == COLUMNS
    assert table.schema.equals(SCHEMA)
    assert set(table.column("run_id").to_pylist()) == {"r1"}
    assert table.column("job_id").to_pylist() == ["job"] * 5
    assert len(list((tmp_path / "m" / "run_id=r1").glob("part-*.parquet"))) == 3
    assert not list((tmp_path / "m").rglob(".tmp-*"))


def test_unknown_columns_are_refused():
    with pytest.raises(KeyError, match="statuss"):
        new_row(statuss="ok")


def test_latest_row_per_item_wins(tmp_path):
    root = str(tmp_path / "m")
    first = ManifestWriter(root, "job", "r1")
    first.append([new_row(item_id="a", status="error", finished_at=_at(1)), new_row(item_id="b", status="ok", finished_at=_at(1))])
    first.flush()
    second = ManifestWriter(root, "job", "r2")
    second.append([new_row(item_id="a", status="ok", finished_at=_at(5))])
    second.flush()
    latest = latest_rows(read_manifest(root))
    assert dict(zip(latest.column("item_id").to_pylist(), latest.column("status").to_pylist())) == {"a": "ok", "b": "ok"}


def test_missing_manifest_reads_empty(tmp_path):
    assert read_manifest(str(tmp_path / "nothing")).num_rows == 0


def test_latest_outcome_ignores_skip_rows(tmp_path):
    from raysr.manifest import latest_outcomes

    root = str(tmp_path / "m")
    for run, status, second in (("r1", "ok", 1), ("r2", "skipped", 5)):
        writer = ManifestWriter(root, "job", run)
        writer.append([new_row(item_id="a", status=status, finished_at=_at(second))])
        writer.flush()
    table = read_manifest(root)
    assert latest_rows(table).column("status").to_pylist() == ["skipped"]
    assert latest_outcomes(table).column("status").to_pylist() == ["ok"]


def test_parts_go_out_by_row_count_or_interval(tmp_path):
    def parts(root):
        return sorted(path.name for path in (tmp_path / root).rglob("part-*.parquet"))

    batched = ManifestWriter(str(tmp_path / "batched"), "job", "r1", rows_per_part=3, flush_interval_s=3600)
    for index in range(4):
        batched.append([new_row(item_id=f"i{index}", status="ok")])
    assert len(parts("batched")) == 1, "a part once 3 rows are queued, not one per append"
    batched.flush()
    assert len(parts("batched")) == 2 and read_manifest(str(tmp_path / "batched")).num_rows == 4
    eager = ManifestWriter(str(tmp_path / "eager"), "job", "r1", flush_interval_s=0.0)
    eager.append([new_row(item_id="a", status="ok")])
    assert len(parts("eager")) == 1, "an interval that has passed writes the queued rows"


def test_read_only_some_columns(tmp_path):
    root = str(tmp_path / "m")
    writer = ManifestWriter(root, "job", "r1")
    writer.append([new_row(item_id="a", status="ok", finished_at=_at(1), notes="long text")])
    writer.flush()
    table = read_manifest(root, columns=("item_id", "status", "run_id", "not_a_column"))
    assert table.column_names == ["run_id", "item_id", "status"]
    assert table.to_pylist() == [{"run_id": "r1", "item_id": "a", "status": "ok"}]
    assert read_manifest(str(tmp_path / "none"), columns=("item_id",)).column_names == ["item_id"]


def test_latest_rows_keep_the_newest_row_of_each_item(tmp_path):
    rows = [new_row(item_id=item, status=status, finished_at=_at(second))
            for item, status, second in (("b", "error", 1), ("a", "ok", 2), ("b", "ok", 3), ("a", "error", 1),
                                         ("c", "ok", 1), ("b", "error", 2))]
    latest = latest_rows(pa.Table.from_pylist(rows, schema=SCHEMA))
    assert latest.select(["item_id", "status"]).to_pylist() == [
        {"item_id": "a", "status": "ok"}, {"item_id": "b", "status": "ok"}, {"item_id": "c", "status": "ok"}]


_RESUME = ("item_id", "status", "finished_at", "segment_index", "run_id", "output_size")


def _run(root, run_id, rows):
    writer = ManifestWriter(root, "job", run_id)
    writer.append([new_row(**row) for row in rows])
    writer.flush()


def _states(outcomes):
    return {row["item_id"]: (row["status"], row["run_id"]) for row in outcomes.table.to_pylist()}


def test_outcome_snapshot_stands_in_for_the_runs_it_covers(tmp_path):
    import shutil

    from raysr.manifest import read_outcomes, save_outcomes

    root = str(tmp_path / "_raysr" / "manifest")
    assert read_outcomes(root, _RESUME).table.num_rows == 0  # no manifest yet
    _run(root, "r1", [dict(item_id="a", status="error", finished_at=_at(1)), dict(item_id="b", status="ok", finished_at=_at(1))])
    _run(root, "r2", [dict(item_id="a", status="ok", finished_at=_at(5)), dict(item_id="b", status="skipped", finished_at=_at(5))])
    saved = save_outcomes(root, "r2", _RESUME)
    assert _states(saved) == {"a": ("ok", "r2"), "b": ("ok", "r1")} and saved.runs == ("r1", "r2")
    assert (tmp_path / "_raysr" / "manifest" / "_outcomes" / "r2.parquet").is_file()
    assert read_manifest(root).num_rows == 4, "snapshots are not manifest rows"
    assert _states(read_outcomes(root, _RESUME)) == _states(saved), "every run covered: the snapshot alone"
    # The covered runs' rows are no longer read: the snapshot alone gives their outcomes.
    shutil.rmtree(tmp_path / "_raysr" / "manifest" / "run_id=r1")
    # A later run without a snapshot (killed) is read on top of it.
    _run(root, "r3", [dict(item_id="b", status="error", finished_at=_at(9)), dict(item_id="c", status="ok", finished_at=_at(9))])
    outcomes = read_outcomes(root, _RESUME)
    assert _states(outcomes) == {"a": ("ok", "r2"), "b": ("error", "r3"), "c": ("ok", "r3")}
    assert outcomes.runs == ("r1", "r2", "r3")


def test_only_the_newest_snapshots_are_kept_and_a_damaged_one_is_passed_over(tmp_path, caplog):
    from raysr.manifest import read_outcomes, save_outcomes

    root = str(tmp_path / "_raysr" / "manifest")
    folder = tmp_path / "_raysr" / "manifest" / "_outcomes"
    for index, run in enumerate(("r1", "r2", "r3")):
        _run(root, run, [dict(item_id=f"i{index}", status="ok", finished_at=_at(index))])
        save_outcomes(root, run, _RESUME)
    assert sorted(path.name for path in folder.iterdir()) == ["r2.parquet", "r3.parquet"]
    (folder / "r3.parquet").write_bytes(b"not parquet")
    outcomes = read_outcomes(root, _RESUME)
    assert sorted(_states(outcomes)) == ["i0", "i1", "i2"] and "unreadable" in caplog.text


def test_a_part_that_cannot_be_written_keeps_its_rows_for_the_next_part(tmp_path, caplog):
    root = tmp_path / "manifest"
    writer = ManifestWriter(str(root), job_id="j", run_id="r1", rows_per_part=2, flush_interval_s=0)
    run_dir = root / "run_id=r1"
    shutil.rmtree(run_dir)
    run_dir.write_text("a file where the run's folder was: the store's bad minute")
    with caplog.at_level(logging.WARNING, logger="raysr.manifest"):
        writer.append([new_row(item_id="a", status="ok"), new_row(item_id="b", status="ok")])
    assert "could not write a manifest part" in caplog.text and writer.rows_pending == 2
    run_dir.unlink()
    run_dir.mkdir()
    writer.append([new_row(item_id="c", status="ok")])
    assert writer.rows_pending == 0 and writer.rows_written == 3
    assert sorted(read_manifest(str(root)).column("item_id").to_pylist()) == ["a", "b", "c"]


def test_a_manifest_store_that_stays_down_ends_the_run_before_memory_fills(tmp_path):
    root = tmp_path / "manifest"
    writer = ManifestWriter(str(root), job_id="j", run_id="r1", rows_per_part=1, flush_interval_s=0)
    shutil.rmtree(root / "run_id=r1")
    (root / "run_id=r1").write_text("never a folder again")
    with pytest.raises(OSError):
        for index in range(20):
            writer.append([new_row(item_id=str(index), status="ok")])
    assert writer.rows_pending >= 10


def test_find_manifest_takes_the_manifest_or_the_job_output_folder(tmp_path):
    from raysr.manifest import find_manifest

    output = tmp_path / "out"
    writer = ManifestWriter(str(output / "_raysr" / "manifest"), "job", "r1")
    writer.append([new_row(item_id="a", status="ok", finished_at=_at(1))])
    writer.flush()
    manifest = str(output / "_raysr" / "manifest")
    assert find_manifest(manifest) == manifest
    assert find_manifest(str(output)) == manifest  # the job's output folder, as users often give it
    with pytest.raises(FileNotFoundError, match=r"manifst: no manifest there.*<output>/_raysr/manifest"):
        find_manifest(str(output / "_raysr" / "manifst"))


def test_latest_rows_outcomes_first_and_iter_runs(tmp_path):
    from raysr.manifest import iter_runs

    root = str(tmp_path / "m")
    for run, rows in (("r1", [("a", "ok", 1), ("b", "error", 1)]),
                      ("r2", [("a", "skipped", 5), ("b", "ok", 5), ("c", "skipped", 5)])):
        writer = ManifestWriter(root, "job", run)
        writer.append([new_row(item_id=item, status=status, finished_at=_at(second)) for item, status, second in rows])
        writer.flush()
    table = read_manifest(root)
    newest = dict(zip(*latest_rows(table).select(["item_id", "status"]).to_pydict().values()))
    assert newest == {"a": "skipped", "b": "ok", "c": "skipped"}
    state = dict(zip(*latest_rows(table, outcomes_first=True).select(["item_id", "status"]).to_pydict().values()))
    assert state == {"a": "ok", "b": "ok", "c": "skipped"}  # c has no outcome: its skip stands
    runs = [(run_id, rows.num_rows, set(rows.column("run_id").to_pylist())) for run_id, rows in iter_runs(root)]
    assert runs == [("r1", 2, {"r1"}), ("r2", 3, {"r2"})]
    assert list(iter_runs(str(tmp_path / "none"))) == []
