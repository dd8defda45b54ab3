"""Child processes for the claim tests: they race for one output, started together at a barrier.

Each function runs in a process of its own (multiprocessing, spawn) and takes part in several
rounds; every round starts at a barrier that all racers reach, so none has a head start.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from pathlib import Path


def race_for_claim(root: str, rounds: int, start, end, results) -> None:
    """Round k: claim `root/run<k>` at once with the others; the winner holds it until all tried."""
    from nlbkit.claims import ClaimHeld, claim

    for k in range(rounds):
        start.wait(timeout=60)
        try:
            with claim(Path(root) / f"run{k}"):
                results.put((k, os.getpid(), "won", ""))
                end.wait(timeout=60)
        except ClaimHeld as exc:
            results.put((k, os.getpid(), "refused", str(exc)))
            end.wait(timeout=60)


def train_at_the_gate(args_by_round: list[list[str]], log_dir: str, start, results) -> None:
    """Round k: `nlbkit train *args_by_round[k]`, let into its claim at the same moment as the
    other racer (the gate sits just before the claim, where the old exists-check was raced).

    Puts (round, pid, exit code); stdout and stderr go to `log_dir/<round>_<pid>.out|.err`.
    """
    import nlbkit.train.run as run_module
    from nlbkit.cli import main

    real_claim = run_module.claim

    @contextlib.contextmanager
    def gated(*args, **kwargs):
        start.wait(timeout=120)
        with real_claim(*args, **kwargs) as path:
            yield path

    run_module.claim = gated
    for k, args in enumerate(args_by_round):
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["train", *args], standalone_mode=True)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        base = Path(log_dir) / f"{k}_{os.getpid()}"
        base.with_suffix(".out").write_text(out.getvalue())
        base.with_suffix(".err").write_text(err.getvalue())
        results.put((k, os.getpid(), code))


def hold_then_die(target: str, ready) -> None:
    """Claim `target`, say so, and die by SIGKILL while holding it (no release)."""
    from nlbkit.claims import claim

    with claim(target):
        ready.set()
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def hold_until(target: str, ready, release) -> None:
    """Claim `target` and hold it until `release` is set."""
    from nlbkit.claims import claim

    with claim(target):
        ready.set()
        release.wait(timeout=300)
