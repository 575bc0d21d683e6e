"""A training run's log: one row per epoch part (phase, epoch, learning rate, losses, selection rates, the
validation figures), rewritten to `log.csv` and sent to TensorBoard after every epoch; kept in `last.pt` so a
resumed run continues it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunLog:
    rows: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0  # rows already sent to TensorBoard
    writer: Any = None  # TensorBoard SummaryWriter, opened on the first write

    @classmethod
    def resumed(cls, rows: list[dict[str, Any]]) -> RunLog:
        """The log of an interrupted run, whose rows TensorBoard already has."""
        return cls(list(rows), sent=len(rows))

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def update_last(self, values: dict[str, Any]) -> None:
        self.rows[-1].update(values)

    def write(self, out: Path) -> None:
        """`out/log.csv` (every row, every column seen) and the new rows to `out/tensorboard`."""
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with open(out / "log.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))
        while self.sent < len(self.rows):
            row = self.rows[self.sent]
            self.sent += 1
            tag = f"{row['phase']}/{row['part']}"
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(f"{key}/{tag}" if not key.startswith("val") else key, value, self.sent)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
