"""`python -m medim synthesize`: the shared pairs format, resuming, and sharding across two processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medim.__main__ import main
from medim.commands.synthesize import blocks_for_rank, existing_records, pair_id

ROOT = Path(__file__).resolve().parents[2]


def synthesize(checkpoint, out, n, *extra):
    return main(
        [
            "synthesize",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--n",
            str(n),
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--threads",
            "1",
            "--device",
            "cpu",
            "--no-progress",
            *extra,
        ]
    )


def read_pairs(out):
    return [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("n, batch, world", [(7, 2, 2), (6, 4, 3), (1, 5, 2), (10, 3, 1)])
def test_blocks_cover_every_index_exactly_once(n, batch, world):
    covered = sorted(
        i for rank in range(world) for block in blocks_for_rank(n, batch, rank, world) for i in block
    )
    assert covered == list(range(n))


def test_bad_sharding_arguments():
    with pytest.raises(ValueError, match="rank=2"):
        blocks_for_rank(4, 2, 2, 2)


@pytest.fixture(scope="module")
def single_process_run(random_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "single"
    assert synthesize(random_checkpoint, out, 5) == 0
    return out


def test_writes_the_shared_pairs_format(single_process_run):
    pairs = read_pairs(single_process_run)
    assert [p["id"] for p in pairs] == [pair_id(i) for i in range(5)]
    for pair in pairs:
        assert (single_process_run / pair["image"]).is_file()
        assert pair["domain"] in ("chest_xray", "pathology")
        assert pair["source"]["system"] == "medim" and pair["source"]["settings"]["steps"] == 2
    from medim.data.datasets import ManifestDataset

    assert len(ManifestDataset(single_process_run)) == 5  # readable as an evaluation manifest


def test_resume_skips_written_indices_and_extends(random_checkpoint, single_process_run, tmp_path):
    out = tmp_path / "resumed"
    assert synthesize(random_checkpoint, out, 3) == 0
    first_image = (out / "images" / "000000.png").read_bytes()
    (out / "images" / "000001.png").unlink()  # a lost file is regenerated
    assert synthesize(random_checkpoint, out, 5) == 0
    assert (out / "images" / "000000.png").read_bytes() == first_image
    resumed = {p["id"]: p["report"] for p in read_pairs(out)}
    fresh = {p["id"]: p["report"] for p in read_pairs(single_process_run)}
    assert resumed == fresh  # content depends on the index only, not on --n or on resuming
    part_ids = [
        json.loads(line)["id"] for line in (out / "parts" / "pairs.rank0.jsonl").read_text().splitlines()
    ]
    assert sorted(part_ids) == sorted(
        [pair_id(i) for i in range(5)] + ["000001"]
    )  # only the lost one was redone


def test_other_settings_in_the_same_folder_are_refused(random_checkpoint, single_process_run, capsys):
    assert synthesize(random_checkpoint, single_process_run, 5, "--seed", "3") == 2
    assert "seed" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_split_the_work(random_checkpoint, single_process_run, tmp_path):
    """Two workers with the environment `accelerate launch --multi_gpu --num_processes 2` (torchrun) gives them;
    accelerate's PartialState forms a gloo group from it. Started directly to skip the launcher's own start-up."""
    out = tmp_path / "sharded"
    command = [
        sys.executable,
        "-m",
        "medim",
        "synthesize",
        "--checkpoint",
        str(random_checkpoint),
        "--out",
        str(out),
        "--n",
        "5",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--threads",
        "1",
    ]
    port = str(free_port())
    workers = []
    for rank in (0, 1):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "2",
        }
        workers.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err[-1500:] for _, err in outputs]
    assert "2 process(es)" in outputs[0][0]
    ranks = {
        rank: [
            json.loads(line)["id"]
            for line in (out / "parts" / f"pairs.rank{rank}.jsonl").read_text().splitlines()
        ]
        for rank in (0, 1)
    }
    assert ranks == {0: ["000000", "000001", "000004"], 1: ["000002", "000003"]}
    sharded = {p["id"]: p["report"] for p in read_pairs(out)}
    assert sharded == {p["id"]: p["report"] for p in read_pairs(single_process_run)}
    assert set(existing_records(out)) == {pair_id(i) for i in range(5)}
