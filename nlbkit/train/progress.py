"""What training tells the user while it runs: a bar on a terminal, plain lines in a log, an estimate
of the total time, and why it stopped.

On a terminal (stderr a TTY) a tqdm bar; elsewhere (CI, nohup, a pipe) one plain line every few
epochs, because a bar redrawn with carriage returns becomes one huge line in a log file. Torch-free.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

ESTIMATE_AFTER = 3  # epochs of this session timed before the total is estimated
LONG_ON_CPU_S = 3600.0
PLAIN_LINES = 20  # about this many plain lines per run in a log
CPU_HINT = (
    "on a CPU that is long: --device cuda trains on a GPU if there is one, or try --preset cpu, a "
    "CPU-sized configuration (docs/results.md, section 'Generated data at mc_maze scale')"
)


def human_seconds(seconds: float) -> str:
    """'42 s', '12 min', '3.4 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plain_every(total: int) -> int:
    """Epochs between plain log lines: about PLAIN_LINES lines over `total` epochs."""
    return max(1, math.ceil(total / PLAIN_LINES))


def estimate_line(
    epoch_seconds: float, done: int, total: int, device: str, early_stop: bool = True, setting: str = ""
) -> str:
    """The estimated total training time, with a hint when it is over an hour on a CPU.

    `epoch_seconds` is the mean wall time of the epochs timed so far; `done` epochs are complete;
    `early_stop`: whether validation may end the run sooner (not without validation trials);
    `setting`: how the epochs ran (precision, threads), shown beside the time an epoch.
    """
    remaining = epoch_seconds * max(total - done, 0)
    sooner = "; early stopping may end it sooner" if early_stop else ""
    how = f" on {device}, {setting}" if setting else ""
    line = (
        f"estimated training time: {human_seconds(remaining)} more for epochs {done + 1}-{total} "
        f"({epoch_seconds:.2f} s an epoch{how}{sooner})"
    )
    if device == "cpu" and remaining > LONG_ON_CPU_S:
        line += f"; {CPU_HINT}"
    return line


def stop_line(epoch: int, patience: int, best_epoch: int) -> str:
    return (
        f"stopped at epoch {epoch}: no better validation co-bps for {patience} epochs; "
        f"best at epoch {best_epoch}"
    )


class EpochProgress:
    """Progress of one training session from epoch `start` (epochs done) to `total`.

    `enabled=False` prints nothing. `stream` defaults to stderr; `tty` to whether it is a terminal.
    `validates=False` (no validation trials: every trial trains) shows the loss alone.
    """

    def __init__(
        self,
        total: int,
        start: int = 0,
        device: str = "cpu",
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
        validates: bool = True,
        setting: str = "",
    ) -> None:
        self.total, self.start, self.device, self.enabled = total, start, device, enabled
        self.validates, self.setting = validates, setting
        self.stream = stream if stream is not None else sys.stderr
        self.tty = tty if tty is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = plain_every(total)
        self.started = time.perf_counter()
        self.estimated = False
        self.latest_co_bps = float("nan")
        self.bar = None
        if enabled and self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="epoch", dynamic_ncols=True,
                            file=self.stream)

    def say(self, line: str) -> None:
        """One line that does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, epoch: int, loss: float, val_co_bps: float) -> None:
        """After epoch `epoch` (1-based) is complete; `val_co_bps` is NaN where it did not validate."""
        if not self.enabled:
            return
        if math.isnan(val_co_bps):  # no validation this epoch: show the latest one
            val_co_bps = self.latest_co_bps
        self.latest_co_bps = val_co_bps
        if self.bar is not None:
            self.bar.update(1)
            shown = {"val_co_bps": f"{val_co_bps:.4f}"} if self.validates else {}
            self.bar.set_postfix(loss=f"{loss:.4f}", **shown)
        elif epoch % self.every == 0 or epoch == self.total or epoch == self.start + 1:
            elapsed = human_seconds(time.perf_counter() - self.started)
            shown = f", val co-bps {val_co_bps:.4f}" if self.validates else ""
            self.say(f"epoch {epoch}/{self.total}: loss {loss:.4f}{shown} ({elapsed})")
        timed = epoch - self.start
        if not self.estimated and timed >= ESTIMATE_AFTER and epoch < self.total:
            self.estimated = True
            mean = (time.perf_counter() - self.started) / timed
            self.say(estimate_line(mean, epoch, self.total, self.device, self.validates, self.setting))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
