"""The speed harness on a tiny random checkpoint: one run writes the four tables, and the rows they share print
the same figure in every file."""

from __future__ import annotations

import re

from benchmarks import speed
from benchmarks.common import LoadRecord
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
    k = "3"
    assert re.search(r"K = (\d+)", files["speedups"]).group(1) == k
    shared = {}
    for line in files["speed"].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[4].replace(".", "").isdigit():
            shared[(cells[0], float(cells[1]), cells[2])] = float(cells[4])
    assert set(shared) == {
        ("report→image", 0.0, "2"),
        ("report→image", 0.0, k),
        ("report→image", 2.0, "2"),
        ("report→image", 2.0, k),
    }  # latency's K values x guidance; the others reuse them
    # each table rounds to whole ms; they all print the one measurement
    r2i = round(shared[("report→image", 0.0, k)])
    assert float(_ms(files["floor"], f"report→image sample, K={k}", 2)) == round(
        shared[("report→image", 0.0, k)], 1
    )
    assert int(_ms(files["latency"], f"report→image|0|MeDiM K={k}", 3)) == r2i
    speedups_r2i = files["speedups"].split("## report→image, K = " + k + ", guidance 0.0")[1]
    assert int(_ms(speedups_r2i, "default: + restricted head", 1)) == r2i


def test_a_busy_machine_is_flagged(monkeypatch, capsys):
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    lines = LoadRecord().lines()
    assert any("BUSY MACHINE" in line for line in lines)
    assert "BUSY MACHINE" in capsys.readouterr().err
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not any("BUSY" in line for line in LoadRecord().lines())
