"""Shared benchmark plumbing: machine description, timing, the test examples, quality metrics, result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from medim.paths import shown_path as medim_shown_path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
EXAMPLES = REPO / "assets" / "examples"
DEFAULT_CHECKPOINT = REPO / "assets" / "default"
DEFAULT_JUDGE = REPO / "assets" / "judge"
# scale of the speed tables' guided rows: the embedded default's own (its sampler_config.json guidance_scale)
GUIDED_ROWS_SCALE = 1.5


# ---------------------------------------------------------------------------------------------------------
# Machine and timing
# ---------------------------------------------------------------------------------------------------------


def warm_start_command(source: str) -> list[str]:
    """The start of a `python -m train medim` command that warm-starts the demo-cpu preset from ``source``."""
    return [sys.executable, "-m", "train", "medim", "--config", "demo-cpu", "--init-from", source]


def run_logged(command: list[str], log: Path, what: str) -> float:
    """Run ``command`` from the repository with its output in ``log``; returns its wall minutes. A failure is a
    RuntimeError naming ``what`` and the log."""
    started = time.time()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode:
        raise RuntimeError(f"{what} failed (exit {result.returncode}); see {log}")
    return (time.time() - started) / 60


def link_shared_cache(shared: Path, out: Path) -> None:
    """Point the run directory ``out``'s token cache at ``shared`` (same tokenizers and corpus, so the same
    tokens) when that exists and ``out`` has none of its own."""
    own = Path(out) / "cache"
    if Path(shared).is_dir() and not own.exists():
        own.parent.mkdir(parents=True, exist_ok=True)
        own.symlink_to(Path(shared).resolve(), target_is_directory=True)


def shown_path(path) -> str:
    """A path as results print it: relative to the repository when inside it (results must not name a machine)."""
    return str(medim_shown_path(path, REPO))


def cpu_model() -> str:
    """The CPU's model name from lscpu (or platform's guess)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using more than `threshold` % CPU right now (a benchmark is only honest on a quiet box)."""
    try:
        import psutil
    except ImportError:
        return []
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for proc in procs:
        try:
            proc.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    busy = []
    for proc in procs:
        try:
            if proc.pid != os.getpid() and proc.cpu_percent(None) > threshold:
                busy.append(" ".join(proc.info["cmdline"] or [proc.info["name"]])[:80])
        except psutil.Error:
            pass
    return busy


def machine_description() -> dict[str, str]:
    """What the numbers were measured on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    busy = busy_processes()
    return {
        "cpu": cpu_model(),
        "cores": str(cores),
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "load average (1 min)": f"{os.getloadavg()[0]:.2f}",
        "other busy processes": "; ".join(busy) if busy else "none",
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


@dataclass
class Timing:
    """Seconds of `runs` timed calls (warm-up excluded)."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """Interquartile-ish spread: (max - min) / median."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median else 0.0


def measure(fn: Callable[[], object], runs: int = 5, warmup: int = 1) -> Timing:
    """Median-ready wall-clock timings of fn() (warm-up calls excluded)."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds)


# Rows that several tables report (the default sample per task, guidance and K at batch 1) are measured once per
# process: `python -m benchmarks.speed` runs the tables in one process, so each of them prints the same figure.
_SHARED_TIMINGS: dict[tuple, Timing] = {}
_SHARED_CALLS: dict[tuple, Callable[[], object]] = {}


def shared_timing(key: tuple, fn: Callable[[], object], runs: int = 5, warmup: int = 1) -> Timing:
    """`measure(fn)` for a row identified by `key`, or the timing already measured for it in this process."""
    if key not in _SHARED_TIMINGS:
        _SHARED_TIMINGS[key] = measure(fn, runs=runs, warmup=warmup)
        _SHARED_CALLS[key] = fn
    return _SHARED_TIMINGS[key]


def retime_shared(runs: int = 5) -> dict[tuple, Timing]:
    """Each shared row measured again now: set beside the first measurement, it shows how far the machine's
    speed moved between the tables of one run (rows measured minutes apart differ by at least that much)."""
    return {key: measure(fn, runs=runs, warmup=1) for key, fn in sorted(_SHARED_CALLS.items())}


def shared_timings() -> dict[tuple, Timing]:
    """Every shared row measured so far in this process (key → timing)."""
    return dict(_SHARED_TIMINGS)


def default_sample(pipe, task: str, examples, steps: int, guidance: float, seed: int = 0):
    """The pipeline's default path end to end for a batch (`MeDiMPipeline.run`, VQ decode included) ->
    GenerationResult: the row the latency, floor and speedups tables share."""
    kwargs: dict = {"num_samples": len(examples)} if task == "pair" else {}
    if task == "report2image":
        kwargs["report"] = [e.report for e in examples]
    elif task == "image2report":
        kwargs["image"] = [e.image for e in examples]
    return pipe.run(task, seed=seed, steps=steps, guidance_scale=guidance, **kwargs)


def default_sample_timing(pipe, task: str, examples, steps: int, guidance: float, runs: int = 5) -> Timing:
    """The shared timing of `default_sample` at batch len(examples) on the first example(s)."""
    key = ("default sample", task, float(guidance), int(steps), len(examples))
    return shared_timing(key, lambda: default_sample(pipe, task, examples, steps, guidance), runs=runs)


# A table is flagged as busy when other processes used more than this share of the machine's CPU time while it was
# measured. The load average cannot say this: it counts the benchmark's own threads (a 2-thread benchmark on
# 2 cores reads about 2 however quiet the rest is).
BUSY_OTHER_CPU_SHARE = 0.25


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (/proc/stat), None where there is none."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all its threads) and of the children it waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadRecord:
    """What else the machine ran while a table was measured: the CPU time other processes used between the
    table's start and its writing (from /proc/stat, less this process's own), and the load average at both ends."""

    def __init__(self):
        self.before = os.getloadavg()
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.started = time.monotonic()
        self.machine_before = machine_cpu_seconds()
        self.own_before = own_cpu_seconds()

    def other_cpu_share(self) -> float | None:
        """Share of the machine's CPU capacity used by other processes since the start (0 = none, 1 = all)."""
        machine = machine_cpu_seconds()
        if machine is None or self.machine_before is None:
            return None
        wall = max(time.monotonic() - self.started, 1e-6)
        others = (machine - self.machine_before) - (own_cpu_seconds() - self.own_before)
        return max(0.0, others) / (wall * self.cores)

    def lines(self) -> list[str]:
        after = os.getloadavg()
        text = "/".join(f"{v:.2f}" for v in self.before) + " → " + "/".join(f"{v:.2f}" for v in after)
        lines = [f"- load average (1/5/15 min) at start → end: {text} (counts this benchmark's own threads)"]
        share = self.other_cpu_share()
        if share is not None:
            lines.append(f"- CPU used by other processes while measuring: {share:.1%} of {self.cores} cores")
            busy = share > BUSY_OTHER_CPU_SHARE
            reason = f"other processes used {share:.0%} of the CPU (> {BUSY_OTHER_CPU_SHARE:.0%})"
        else:  # no /proc/stat: the 1-minute load at the start (what ran just before) is the best sign left
            busy = self.before[0] > BUSY_OTHER_CPU_SHARE * 2 * self.cores
            reason = f"1-minute load {self.before[0]:.2f} at the start on {self.cores} cores"
        if busy:
            warning = f"**BUSY MACHINE: {reason} — these timings are not comparable with a quiet run.**"
            print("WARNING: " + warning.strip("*"), file=sys.stderr)
            lines.append(f"- {warning}")
        return lines


def gemm_gflops(size: int = 1024, runs: int = 5) -> float:
    """Measured fp32 matmul throughput (GFLOP/s) of one [size, size] @ [size, size] GEMM, median of runs."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    timing = measure(lambda: torch.mm(a, b), runs=runs, warmup=2)
    return 2 * size**3 / timing.median / 1e9


# ---------------------------------------------------------------------------------------------------------
# Inputs and quality
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Example:
    id: str
    image: Image.Image
    report: str
    domain: str


def load_examples(limit: int | None = None, root: Path = EXAMPLES, split: str = "test") -> list[Example]:
    """The shipped test split (assets/examples/test), chest and pathology interleaved, first `limit`."""
    manifest = root / split / "metadata.jsonl"
    if not manifest.is_file():
        raise ValueError(f"no example split at {manifest}")
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    by_domain: dict[str, list[dict]] = {}
    for record in records:
        by_domain.setdefault(record["domain"], []).append(record)
    ordered = [r for group in zip(*by_domain.values()) for r in group]
    ordered += [r for r in records if r not in ordered]
    out = []
    for record in ordered[:limit]:
        image = Image.open(root / split / record["image"]).convert("RGB")
        out.append(Example(record["id"], image, record["report"], record["domain"]))
    return out


def ce_f1(generated: Sequence[str], references: Sequence[str], domains: Sequence[str]) -> float:
    """Clinical-efficacy micro F1 of generated vs reference reports (rule-based labeler), pooled over
    domains weighted by their number of reports."""
    from medim.metrics.clinical import report_clinical_efficacy

    total, weighted = 0, 0.0
    for domain in sorted(set(domains)):
        rows = [i for i, d in enumerate(domains) if d == domain]
        scores = report_clinical_efficacy([generated[i] for i in rows], [references[i] for i in rows], domain)
        weighted += scores["f1_micro"] * len(rows)
        total += len(rows)
    return weighted / total


def domain_records(dataset, domain: str, count: int, start: int = 0) -> list:
    """The first ``count`` records of ``domain`` in ``dataset`` from row ``start`` on, in corpus order (a
    ValueError when there are fewer)."""
    found = []
    for index in range(start, len(dataset)):
        record = dataset[index]
        if record.domain == domain:
            found.append(record)
            if len(found) == count:
                return found
    raise ValueError(f"only {len(found)} {domain} pairs from row {start} of {len(dataset)}: ask for fewer")


def load_judge(path: Path | None = DEFAULT_JUDGE):
    """The consistency judge when one is available (None otherwise)."""
    if path is None or not Path(path).is_dir():
        return None
    from medim.metrics.judge import ConsistencyJudge

    return ConsistencyJudge.load(path)


def judge_f1(judge, images: Sequence[Image.Image], reports: Sequence[str], domains: Sequence[str]) -> float:
    """Judge-vs-report finding F1 (micro, pooled) of image–report pairs."""
    from medim.metrics.consistency import judge_consistency

    return judge_consistency(judge, list(images), list(reports), domains=list(domains))["overall"]["f1_micro"]


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------


def chosen(parser, text: str, known, what: str) -> list[str]:
    """The comma-separated subset ``text`` of ``known`` names (a parser error naming any unknown one)."""
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown {what} {unknown}; known: {sorted(known)}")
    return names


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """The command that is running, as `python -m benchmarks.<name> <args>` when it is a module of this repo."""
    script = Path(sys.argv[0])
    try:
        name = "python -m " + ".".join(script.with_suffix("").resolve().relative_to(REPO).parts)
    except ValueError:  # not a file of this repo (e.g. a test runner calling main())
        name = script.name
    return f"{name} " + shlex.join(sys.argv[1:])  # quoted, so it can be pasted back into a shell


def write_result(
    name: str,
    title: str,
    sections: Sequence[str],
    machine: dict[str, str],
    out: Path | None = None,
    load: LoadRecord | None = None,
) -> Path:
    """Write benchmarks/results/<name>.md (or `out`) with the machine, the command, the load and the sections."""
    path = Path(out) if out else RESULTS / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", "", f"Command: `{command_line().strip()}`", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    if load is not None:
        lines += load.lines()
    lines.append("")
    for section in sections:
        lines += [section, ""]
    path.write_text("\n".join(lines))
    return path


def pinned_threads(threads: int) -> int:
    """Pin torch's intra-op threads for a benchmark (the issue's setting: 2 on this host)."""
    from medim.runtime import configure_cpu_threads

    return configure_cpu_threads(threads)
