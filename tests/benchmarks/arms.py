"""Shared checks for benchmarks that train arms by `python -m train medim` commands."""

from __future__ import annotations

from train.config import TrainConfig, load_config


def arm_config(command: list[str]) -> TrainConfig:
    """The demo-cpu config an arm's command line trains with (its key=value overrides and its warm start)."""
    overrides = [item for item in command if "=" in item and not item.startswith("output")]
    source = command[command.index("--init-from") + 1]
    return load_config("demo-cpu", [*overrides, f"model.init_from={source}"])


def differing_keys(first: TrainConfig, second: TrainConfig) -> set[tuple[str, str]]:
    """(section, key) of every config value in which two arms differ."""
    a, b = first.to_dict(), second.to_dict()
    return {
        (section, key)
        for section in a
        if isinstance(a[section], dict)
        for key in a[section]
        if a[section][key] != b[section][key]
    }
