"""The speed harness on a tiny random checkpoint: one run writes the four tables, and the rows they share print
the same figure in every file."""

from __future__ import annotations

import json
import re
import time

from benchmarks import speed
from benchmarks.common import DEFAULT_CHECKPOINT, GUIDED_ROWS_SCALE, LoadRecord
from medim.commands.init_random import build_random_pipeline
from medim.config import SamplerConfig


def _ms(markdown: str, row_start: str, column: int) -> str:
    """A cell of the first table row starting with `row_start` (columns counted from the row's first cell)."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and "|".join(cells).startswith(row_start):
            return cells[column]
    raise AssertionError(f"no row {row_start!r}")


def test_one_run_prints_each_shared_row_once_in_every_table(tmp_path):
    pipe = build_random_pipeline(hidden=32, layers=1, text_tokens=12)
    pipe.sampler_config = SamplerConfig(steps=3)  # the checkpoint's default K
    checkpoint = pipe.save_pretrained(tmp_path / "ckpt")
    results = tmp_path / "results"
    args = ["--checkpoint", str(checkpoint), "--runs", "5", "--quality-n", "1", "--steps", "2", "3"]
    args += ["--tasks", "report2image"]  # the task all three tables share
    assert speed.main([*args, "--judge", "", "--results", str(results)]) == 0
    files = {name: (results / f"{name}.md").read_text() for name in ("speed", "latency", "floor", "speedups")}
    assert all("load average (1/5/15 min) at start → end" in text for text in files.values())
    assert all("CPU used by other processes while measuring" in text for text in files.values())
    assert "Largest change of a shared row between its first timing and the end of the run" in files["speed"]
    k = "3"
    assert re.search(r"K = (\d+)", files["speedups"]).group(1) == k
    shared = {}
    for line in files["speed"].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[4].replace(".", "").isdigit():
            shared[(cells[0], float(cells[1]), cells[2])] = float(cells[4])
            # re-timed at the end of the run, and the ratio printed is the ratio of the two medians
            assert abs(float(cells[8]) - float(cells[7]) / float(cells[4])) < 0.01
    assert set(shared) == {
        ("report→image", 0.0, "2"),
        ("report→image", 0.0, k),
        ("report→image", 1.5, "2"),
        ("report→image", 1.5, k),
    }  # latency's K values x guidance (0 and the default sampler's 1.5); the others reuse them
    # each table rounds to whole ms; they all print the one measurement
    r2i = round(shared[("report→image", 0.0, k)])
    assert float(_ms(files["floor"], f"report→image sample, K={k}", 2)) == round(
        shared[("report→image", 0.0, k)], 1
    )
    assert int(_ms(files["latency"], f"report→image|0|MeDiM K={k}", 3)) == r2i
    speedups_r2i = files["speedups"].split("## report→image, K = " + k + ", guidance 0.0")[1]
    assert int(_ms(speedups_r2i, "default: + restricted head", 1)) == r2i


def test_a_machine_busy_with_other_processes_is_flagged(monkeypatch, capsys):
    """The flag reads the CPU time of *other* processes: the benchmark's own threads never make a run busy."""
    clock = {"machine": 1000.0, "own": 10.0, "wall": 0.0}
    monkeypatch.setattr("benchmarks.common.machine_cpu_seconds", lambda: clock["machine"])
    monkeypatch.setattr("benchmarks.common.own_cpu_seconds", lambda: clock["own"])
    monkeypatch.setattr("time.monotonic", lambda: clock["wall"])
    monkeypatch.setattr("os.getloadavg", lambda: (2.0, 2.0, 2.0))  # what the benchmark's own 2 threads read
    cores = LoadRecord().cores

    record = LoadRecord()
    clock.update(wall=10.0, own=10.0 + 10.0 * cores, machine=1000.0 + 10.0 * cores)  # all of it ours
    assert record.other_cpu_share() == 0.0
    assert not any("BUSY" in line for line in record.lines())

    record = LoadRecord()
    clock.update(wall=20.0, machine=clock["machine"] + 10.0 * cores)  # all of it someone else's
    assert abs(record.other_cpu_share() - 1.0) < 1e-9
    assert any("BUSY MACHINE" in line for line in record.lines())
    assert "BUSY MACHINE" in capsys.readouterr().err


def test_without_proc_stat_a_high_load_at_the_start_is_flagged(monkeypatch):
    monkeypatch.setattr("benchmarks.common.machine_cpu_seconds", lambda: None)
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    assert any("BUSY MACHINE" in line for line in LoadRecord().lines())
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not any("BUSY" in line for line in LoadRecord().lines())


def test_the_machine_cpu_counter_sees_work_done_here():
    from benchmarks.common import machine_cpu_seconds, own_cpu_seconds

    machine, own = machine_cpu_seconds(), own_cpu_seconds()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU in this process
        pass
    # both counters tick in hundredths of a second, so two readings of 0.3 s can differ by 0.29 or less
    assert own_cpu_seconds() - own >= 0.27
    if machine is not None:  # Linux: the machine counter includes this process
        assert machine_cpu_seconds() - machine >= 0.25


def test_the_guided_rows_are_timed_at_the_embedded_defaults_guidance():
    sampler_config = json.loads((DEFAULT_CHECKPOINT / "sampler_config.json").read_text())
    assert GUIDED_ROWS_SCALE == sampler_config["guidance_scale"]
