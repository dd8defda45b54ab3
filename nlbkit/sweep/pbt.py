"""Ray Tune's synchronous PBT, without a race that could end a trial early.

At a generation's end synchronous PBT pauses each trial of the bottom quantile before it copies a
top one into it. Ray Tune (2.60, the version tested here) pauses by stopping the trial, and when
that trial is still saving the checkpoint of its own pause (it reached the generation first, and
the last trial's report came in before that save was done), the stop is kept as a pending STOP
decision. The trial restarts from the copied checkpoint; its next save carries out the STOP, so it
ends TERMINATED after one more report, without its last epochs, rates or scores.

`SynchronousPBT` drops whatever decision is still pending for a trial once PBT has paused it: a
paused trial has no actor and no save in flight, so nothing pending can be meant for it (Ray's own
`pause_trial` drops it too, but before it stops the trial). Nothing else of Ray's PBT changes.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining


class PausingController:
    """The controller PBT is handed, whose `pause_trial` leaves no decision pending for the paused trial."""

    def __init__(self, controller: Any) -> None:
        self._controller = controller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        self._controller.pause_trial(trial, should_checkpoint=should_checkpoint)
        real = getattr(self._controller, "_tune_controller", self._controller)
        pending = getattr(real, "_cached_trial_decisions", None)
        if trial.status == Trial.PAUSED and isinstance(pending, dict):
            pending.pop(trial.trial_id, None)


class SynchronousPBT(PopulationBasedTraining):
    """`PopulationBasedTraining(synch=True, ...)` whose exploits pause through `PausingController`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(synch=True, **kwargs)

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        super()._exploit(PausingController(tune_controller), trial, trial_to_clone)
