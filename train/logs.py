"""Training logs: CSV files next to the TensorBoard events, and the loss-curve plot drawn from them."""

from __future__ import annotations

import csv
from pathlib import Path


class CsvLog:
    def __init__(self, path: Path, columns: list[str], *, enabled: bool = True, append: bool = False):
        self.path = Path(path)
        self.columns = columns
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append or not self.path.is_file():
                with open(self.path, "w", newline="") as handle:
                    csv.writer(handle).writerow(columns)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(c, "") for c in self.columns])

    @staticmethod
    def read(path: Path) -> list[dict[str, float]]:
        if not Path(path).is_file():
            return []
        with open(path, newline="") as handle:
            return [
                {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
            ]

    @staticmethod
    def last_row(path: Path) -> dict[str, float]:
        rows = CsvLog.read(path)
        return rows[-1] if rows else {}


def plot_loss_curves(log_dir: Path) -> Path | None:
    """Write log_dir/loss_curve.png: training loss (raw + smoothed), validation loss, per-modality NLL, lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = CsvLog.read(Path(log_dir) / "train.csv")
    val = CsvLog.read(Path(log_dir) / "val.csv")
    if not train:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in train]
    losses = [r["loss"] for r in train]
    smooth, acc = [], None
    for value in losses:
        acc = value if acc is None else 0.9 * acc + 0.1 * value
        smooth.append(acc)
    axes[0].plot(steps, losses, alpha=0.3, label="train (raw)")
    axes[0].plot(steps, smooth, label="train (EMA 0.9)")
    if val:
        axes[0].plot(
            [r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation (EMA weights)"
        )
    axes[0].set(title="eq. 6 loss", xlabel="step", ylabel="loss")
    axes[0].legend()
    for key, label in (("nll_image", "image NLL / masked token"), ("nll_text", "report NLL / masked token")):
        axes[1].plot(steps, [r.get(key, float("nan")) for r in train], label=label)
    if val:
        axes[1].plot(
            [r["step"] for r in val], [r.get("val_nll_image") for r in val], "o--", label="val image NLL"
        )
        axes[1].plot(
            [r["step"] for r in val], [r.get("val_nll_text") for r in val], "o--", label="val report NLL"
        )
    axes[1].set(title="per-modality NLL", xlabel="step")
    axes[1].legend()
    axes[2].plot(steps, [r["lr"] for r in train])
    axes[2].set(title="learning rate", xlabel="step")
    fig.tight_layout()
    path = Path(log_dir) / "loss_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
