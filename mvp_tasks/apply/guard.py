"""What keeps one app target safe while it is applied: the deploy lock, the history record, and
the undo of what it leaves half-done when it fails or is interrupted.

- The lock is a lease (`mvp.state.lease` seconds) that a heartbeat renews every third of it while
  the run lives. Before every later step the lease is renewed once more, synchronously (a write
  on the condition that the lock still holds our token): a run that lost it (broken by
  `app.unlock`, or taken over after it went one lease without renewal) stops before that step.
  Its token is made before the write, so a write whose answer was lost (Ctrl-C, a reset
  connection) is still released: the release deletes the item only if it holds our token.
- Who takes the lock: an app target, and any target that moves a cluster's tag (`app.push
  --cluster`): the tag is what the app's next rollout pulls.
- Undo runs newest first, and only while the lease is still ours (confirmed first): a moved tag
  points back at the image it named before, if it still names ours (compare, then move).
- The history records the outcome: succeeded, failed (with the message) or interrupted.
- What keeps running in AWS on its own (a stack update, a rollout) is noted, to be told at the end.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from ..errors import MvpError


class Guard:
    def __init__(self, world: Any, plan: Any, cluster: Any):
        self.world = world
        self.plan = plan
        self.cluster = cluster
        self.history = world.history(cluster) if plan.recorded and _guarded(plan) else None
        self.token = ""
        self.acted = False
        self.locked_at: float | None = None  # when the lock was taken (monotonic)
        self.lost: MvpError | None = None  # why the lease is not ours any more
        self._beating: threading.Event | None = None  # set: the heartbeat stops
        self._heartbeat: threading.Thread | None = None
        self._renewing = threading.Lock()  # one renewal at a time: the heartbeat's or a step's
        self._expires = 0.0  # monotonic: the lease runs out (for us) unless renewed before
        self._last_wait = 0.0  # monotonic: the acquisition's write was sent after this
        self.undo: list[tuple[str, Callable[[], str | None]]] = []
        self.running: dict[str, str] = {}  # what AWS goes on doing by itself -> how to follow it

    # --- the lock, a lease kept alive by a heartbeat ---------------------------------------------

    def lock(self) -> None:
        """Take the deploy lock (once), right before the target's first change. Only a target that
        got the lock has acted: one refused by another run's lock records nothing. Before every
        later step: the lease must still be ours (`LeaseLost` otherwise, and the step does not run)."""
        if self.history is None:
            self.acted = True
            return
        if self.token:
            self.confirm_lease()
            return
        from ..state.store import LockHeld

        owner = f"{self.world.caller} on {socket.gethostname()} (pid {os.getpid()})"
        self.token = uuid.uuid4().hex
        self.locked_at = self._last_wait = time.monotonic()
        lease = self.world.settings.state.lease
        try:
            self.history.acquire(self.plan.project, owner, lease, token=self.token,
                                 on_takeover=lambda line: self.world.reporter.warn(f"{self.plan.key}: {line}"),
                                 on_wait=lambda line: self.world.reporter.event(line, target=self.plan.key),
                                 wait=self._wait)
        except LockHeld:
            self.token = ""  # DynamoDB answered: the lock is another run's, there is nothing of ours
            raise
        self.acted = True
        self._start_heartbeat(lease)

    def _wait(self, seconds: float) -> None:
        """A sleep while another run's lease is watched, which Ctrl-C ends."""
        self.world.sleep(seconds)
        self._last_wait = time.monotonic()  # a takeover's write follows the last wait

    def act(self) -> None:
        """Before a step that does not take the lock (breaking it, a secret): the target has acted,
        so its outcome is recorded."""
        self.acted = True

    def _start_heartbeat(self, lease: float) -> None:
        self.lost = None
        beating = self._beating = threading.Event()
        # Timed from before the write: whoever watches our lock saw the write after it was sent.
        self._expires = self._last_wait + lease

        def beat() -> None:
            from ..state.store import LeaseLost

            while not beating.wait(lease / 3):
                try:
                    self._renew(lease)
                except LeaseLost:
                    return
                except MvpError as exc:  # throttled, unreachable: try again at the next beat...
                    # ...unless the lease runs out before it: then another run may take it meanwhile.
                    if time.monotonic() + lease / 3 >= self._expires:
                        self.lost = LeaseLost(f"could not renew the deploy lock of {self.plan.project} in "
                                              f"{self.history.cluster} before its lease ran out: {exc}")
                        return

        self._heartbeat = threading.Thread(target=beat, name=f"lease {self.plan.key}", daemon=True)
        self._heartbeat.start()

    def _renew(self, lease: float) -> None:
        """One renewal, confirmed by DynamoDB (a new record version, on the condition that the lock
        holds our token); `LeaseLost` (and `lost` set) when it is not ours any more."""
        from ..state.store import LeaseLost

        with self._renewing:
            if self.lost is not None:
                raise self.lost
            sent = time.monotonic()
            try:
                self.history.renew(self.plan.project, self.token, lease)
            except LeaseLost as exc:
                self.lost = exc
                raise
            self._expires = sent + lease

    def check_lease(self) -> None:
        """What the heartbeat last learnt: `LeaseLost` if the lease is not ours any more."""
        lost = self.lost
        if lost is not None:
            raise type(lost)(f"{lost.message}; stopped before its next change", lost.hint)

    def confirm_lease(self) -> None:
        """Before a step that changes something: the lease renewed now, synchronously, not only as
        the heartbeat last found it. A lease lost, or not confirmed, stops the target before it."""
        from ..state.store import LeaseLost

        self.check_lease()
        try:
            self._renew(self.world.settings.state.lease)
        except LeaseLost:
            self.check_lease()
            raise
        except MvpError as exc:
            raise MvpError(f"could not confirm the deploy lock of {self.plan.project} in {self.history.cluster}: "
                           f"{exc}; stopped before its next change", "re-run once DynamoDB answers") from None

    def release(self) -> None:
        if self.history is None or not self.token:
            return
        if self._beating is not None:
            self._beating.set()
        token, self.token = self.token, ""
        if self.lost is not None:
            return  # not ours any more: whoever holds it now keeps it
        # A stranded lock blocks every later run, so the release is tried harder than one call's
        # own retries (botocore's, already with back-off): three rounds, a second apart.
        for attempt in range(3):
            try:
                self.history.release(self.plan.project, token)
                return
            except MvpError as exc:
                if attempt == 2:
                    self.world.reporter.warn(f"{self.plan.key}: could not release the deploy lock: {exc}")
                else:
                    time.sleep(1)

    # --- undo and what goes on by itself ----------------------------------------------------------

    def on_undo(self, what: str, action: Callable[[], str | None]) -> None:
        self.undo.append((what, action))

    def forget_undo(self) -> None:
        self.undo.clear()

    def run_undo(self) -> None:
        """Undo what the target left half-done, newest first, but only while the lease is still its
        own: once another run may hold the lock, what this one did may be that run's now. An undo
        may say what it did instead (`action` returns a line: a tag left where another run put it)."""
        if not self.undo:
            return
        if self.history is not None and self.token:
            try:
                self.confirm_lease()
            except MvpError as exc:
                skipped = "; ".join(what for what, _ in reversed(self.undo))
                self.undo.clear()
                why = self.lost.message if self.lost is not None else exc.message
                self.world.reporter.warn(f"{self.plan.key}: left as it is, not undone ({skipped}): "
                                         f"its deploy lock is not its own any more ({why})")
                return
        while self.undo:
            what, action = self.undo.pop()
            try:
                said = action()
                self.world.reporter.warn(f"{self.plan.key}: {said or what}")
            except MvpError as exc:
                self.world.reporter.warn(f"{self.plan.key}: could not undo ({what}): {exc}")

    def started_in_aws(self, what: str, follow: str) -> None:
        self.running[what] = follow

    def settled_in_aws(self, what: str) -> None:
        self.running.pop(what, None)

    # --- the history ------------------------------------------------------------------------------

    def record(self, outcome: str, message: str = "", digest: str = "") -> str:
        """The target's history record; with the lock still ours, the lock is released in the same
        transaction (`release` then has nothing left to do). A run that lost its lock before it
        finished cannot vouch for what it did (the next holder may have overtaken it): its success
        is recorded as a failure that says so. Returns the outcome recorded (or meant to be)."""
        lost_line = ""
        if outcome == "succeeded" and self.history is not None and self.token:
            lost_line = self._lost_before_the_end()
            if self.lost is not None:
                outcome, message = "failed", lost_line
        if self.history is None or not self.acted or not self.plan.action:
            return outcome
        try:
            started = self.locked_at
            # The action as the string every record has (`str(Action.X)` is its value).
            fields = dict(action=str(self.plan.action), commit=self.plan.commit, digest=digest or self.plan.digest,
                          outcome=outcome, by=self.world.caller, message=message,
                          duration=time.monotonic() - started if started is not None else None)
            if self.token and self.lost is None:
                if self._beating is not None and self._heartbeat is not None:
                    self._beating.set()  # no renewal of a lock being released, nor one in flight
                    self._heartbeat.join(timeout=10)
                if_lost = {"outcome": "failed", "message": lost_line} if outcome == "succeeded" else None
                released = self.history.record_and_release(self.plan.project, self.token, if_lost=if_lost, **fields)
                if released is not None:
                    self.token = ""  # released, or not ours any more; else `release` deletes it
                if released is False:
                    from ..state.store import LeaseLost

                    self.lost = LeaseLost(lost_line)
                    if if_lost is not None:
                        return "failed"
            else:
                self.history.record(self.plan.project, **fields)
        except MvpError as exc:
            self.world.reporter.warn(f"{self.plan.key}: could not record the {outcome} {self.plan.action}: {exc}")
        return outcome

    def _lost_before_the_end(self) -> str:
        return (f"lost the deploy lock of {self.plan.project} in {self.plan.cluster} before it finished "
                "(broken by app.unlock, or taken over): another run may have changed what it did; "
                f"see inv app.history {self.plan.project} --cluster {self.plan.cluster}")

def _guarded(plan: Any) -> bool:
    """Whether a target takes its app's deploy lock and leaves a history record: an app target,
    and any target that moves a cluster's tag (whatever task made it: `app.push --cluster`)."""
    from ..plan.steps import MoveTag

    if plan.kind == "app":
        return True
    return bool(plan.project and plan.cluster) and any(isinstance(step, MoveTag) for step in plan.steps)
