"""benchmarks.common.run_logged and link_shared_cache: what the arm benchmarks run their training through."""

from __future__ import annotations

import sys

import pytest

from benchmarks.common import link_shared_cache, run_logged


def test_run_logged_keeps_the_output_and_names_a_failure(tmp_path):
    log = tmp_path / "ok.log"
    minutes = run_logged([sys.executable, "-c", "print('trained')"], log, "arm a")
    assert minutes >= 0 and log.read_text().strip() == "trained"
    failing = [sys.executable, "-c", "import sys; print('broke'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"arm b failed \(exit 3\); see .*bad.log"):
        run_logged(failing, tmp_path / "bad.log", "arm b")
    assert (tmp_path / "bad.log").read_text().strip() == "broke"


def test_link_shared_cache_links_an_existing_cache_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "first" / "cache").mkdir(parents=True)
    link_shared_cache("first/cache", "second")  # relative paths: the link still points at the real cache
    assert (tmp_path / "second" / "cache").resolve() == (tmp_path / "first" / "cache").resolve()
    assert (tmp_path / "second" / "cache").is_symlink()
    link_shared_cache("missing/cache", "third")
    assert not (tmp_path / "third" / "cache").exists()
    (tmp_path / "fourth" / "cache").mkdir(parents=True)
    link_shared_cache("first/cache", "fourth")  # a cache of its own stays
    assert not (tmp_path / "fourth" / "cache").is_symlink()
