"""Batch and the CLI's project mode: sharding, skip / resume, kill -9 of `restore --project`, and
the multi-process split under accelerate launch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sparkvsr.batch import (
    BatchJob,
    BatchOptions,
    format_table,
    list_inputs,
    plan_jobs,
    process_rank,
    run_batch,
    shard,
)
from sparkvsr.engines.base import RestoreOptions
from sparkvsr.errors import EngineError, SparkVSRError
from sparkvsr.keyframes import KeyframeSelection
from sparkvsr.project import Project
from tests.project_helpers import ROOT, UpscaleEngine, decode_all, make_clip, run_module

ACCELERATE = Path(sys.executable).parent / "accelerate"
FAST = ["--chunk", "8", "--overlap", "0"]


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        make_clip(folder / f"{name}.mp4", num_frames=16, width=32, height=24, seed=i)
    (folder / "notes.txt").write_text("not a clip")
    return folder


# ---------------------------------------------------------------------------------------------
# Pure parts


def test_shards_never_overlap_and_cover_every_input(tmp_path):
    jobs = plan_jobs([Path(f"c{i}.mp4") for i in range(11)], tmp_path)
    for world in (1, 2, 3, 4, 16):
        shares = [shard(jobs, rank, world) for rank in range(world)]
        names = [job.name for share in shares for job in share]
        assert sorted(names) == sorted(job.name for job in jobs)
        assert len(names) == len(set(names))


def test_rank_comes_from_torchrun_or_mpi_variables():
    assert process_rank({}) == (0, 1)
    assert process_rank({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert process_rank({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}) == (2, 3)
    assert process_rank({"PMI_RANK": "0", "PMI_SIZE": "4"}) == (0, 4)
    with pytest.raises(SparkVSRError, match=r"RANK=2 must be in 0\.\.WORLD_SIZE-1"):
        process_rank({"RANK": "2", "WORLD_SIZE": "2"})


def test_inputs_from_a_folder_or_a_list_with_unique_names(tmp_path, clips):
    assert [p.name for p in list_inputs(clips)] == ["alpha.mp4", "beta.mp4", "gamma.mp4"]
    listing = tmp_path / "list.txt"
    listing.write_text("# my clips\ninputs/beta.mp4\n\n" + str(clips / "alpha.mp4") + "\n")
    assert list_inputs(listing) == [tmp_path / "inputs" / "beta.mp4", clips / "alpha.mp4"]
    jobs = plan_jobs([Path("a/x.mp4"), Path("b/x.mp4"), Path("c/x y.mkv")], tmp_path / "out")
    assert [j.name for j in jobs] == ["x", "x-2", "x-y"]
    assert jobs[1] == BatchJob(
        "x-2", Path("b/x.mp4"), tmp_path / "out" / "projects" / "x-2", tmp_path / "out" / "x-2.mp4"
    )
    with pytest.raises(SparkVSRError, match="does not exist"):
        list_inputs(tmp_path / "nowhere")


class CrashingEngine(UpscaleEngine):
    """The same engine, failing after ``after`` chunks (a crash mid-render)."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def restore(self, source, references, options, *, progress=None, cancel=None):
        chunks = super().restore(source, references, options, progress=progress, cancel=cancel)
        for count, chunk in enumerate(chunks):
            if count == self.after:
                raise EngineError("out of GPU memory")
            yield chunk


def test_batch_skips_finished_resumes_interrupted_and_reports_failures(tmp_path, clips):
    (clips / "broken.mp4").write_bytes(b"not a video at all")
    jobs = plan_jobs(list_inputs(clips), tmp_path / "out")
    options = BatchOptions(
        options=RestoreOptions(chunk=4, overlap=0), keyframes=KeyframeSelection("uniform", every=8)
    )

    crashed = run_batch(jobs[:1], options, engine=CrashingEngine(after=2))
    assert crashed[0].status == "failed" and "out of GPU memory" in crashed[0].message

    rows = {row.name: row for row in run_batch(jobs, options, engine=UpscaleEngine())}
    assert (rows["alpha"].status, rows["alpha"].chunks_resumed) == ("resumed", 2)
    assert rows["alpha"].chunks_rendered == 2
    assert [row[0] for row in Project.open(jobs[0].project).chunk_log()] == [0, 4, 8, 12]
    assert rows["beta"].status == "done" and rows["gamma"].status == "done"
    assert rows["broken"].status == "failed" and "not a readable video" in rows["broken"].message
    assert Project.open(jobs[1].project).state.keyframes == (0, 8)
    assert decode_all(jobs[1].output).shape == (16, 96, 128, 3)

    again = {row.name: row for row in run_batch(jobs, options, engine=UpscaleEngine())}
    assert [again[n].status for n in ("alpha", "beta", "gamma")] == ["skipped"] * 3
    table = format_table(list(again.values()))
    assert "3 of 4 finished, 1 failed" in table and "skipped" in table


def _wait_for_chunks(log: Path, count: int, process: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"the process ended (code {process.returncode}) before the kill")
        time.sleep(0.01)
    raise AssertionError(f"no {count} chunks within {timeout} s")


def test_kill_9_of_restore_project_then_resume_is_exact(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", num_frames=40, width=96, height=64)
    args = ["restore", str(clip), "--keyframes", "0,20", "--chunk", "4", "--overlap", "0"]

    # 1. kill -9 the CLI once two chunks are saved
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sparkvsr",
            *args,
            "-o",
            str(tmp_path / "a.mp4"),
            "--project",
            str(killed),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_chunks(killed / "chunks.log", 2, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)
    resume_frame = Project.open(killed).state.render.resume_frame
    assert 8 <= resume_frame < 40, "the kill must land mid-render"
    assert not (tmp_path / "a.mp4").exists()

    # 2. the same command resumes after the last finished chunk
    result = run_module(*args, "-o", str(tmp_path / "a.mp4"), "--project", str(killed))
    assert result.returncode == 0, result.stderr
    assert re.search(r"wrote .*a\.mp4 \(40 frames, \d+ chunks resumed", result.stdout)
    starts = [row[0] for row in Project.open(killed).chunk_log()]
    assert starts == list(range(0, 40, 4))  # no chunk rendered twice

    # 3. identical to an uninterrupted run
    whole = run_module(*args, "-o", str(tmp_path / "b.mp4"), "--project", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert np.array_equal(decode_all(tmp_path / "a.mp4"), decode_all(tmp_path / "b.mp4"))

    # 4. the same command again: nothing left to do
    again = run_module(*args, "-o", str(tmp_path / "a.mp4"), "--project", str(killed))
    assert again.returncode == 0 and "already rendered" in again.stdout


def _launched_rows(stdout: str) -> dict[int, list[str]]:
    """{rank: [input names it processed]} from the batch log lines."""
    rows: dict[int, list[str]] = {}
    for rank, name in re.findall(r"^\[rank (\d+)\] (\w+): (?:done|resumed|skipped)", stdout, re.M):
        rows.setdefault(int(rank), []).append(name)
    return rows


@pytest.mark.skipif(not ACCELERATE.exists(), reason="accelerate is not installed in this venv")
@pytest.mark.parametrize(
    "launcher",
    [
        ["--num_processes", "2", "--cpu"],  # accelerate 1.x runs one CPU process without mpirun
        ["--num_processes", "2", "--multi_gpu"],  # torchrun underneath: two processes, even on CPU
    ],
    ids=["cpu", "torchrun"],
)
def test_batch_under_accelerate_launch_splits_without_overlap(tmp_path, clips, launcher):
    command = [str(ACCELERATE), "launch", *launcher, "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    command += ["-m", "sparkvsr", "batch", str(clips), "-o", str(tmp_path / "out"), *FAST]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    worlds = {int(w) for w in re.findall(r"\(world size (\d+)\)", result.stdout)}
    rows = _launched_rows(result.stdout)
    processed = [name for names in rows.values() for name in names]
    assert sorted(processed) == ["alpha", "beta", "gamma"]  # every input exactly once
    assert len(worlds) == 1 and set(rows) <= set(range(max(worlds)))  # one share per process
    if "--multi_gpu" in launcher:
        assert worlds == {2} and set(rows) == {0, 1}
    for name in ("alpha", "beta", "gamma"):
        assert decode_all(tmp_path / "out" / f"{name}.mp4").shape == (16, 96, 128, 3)
