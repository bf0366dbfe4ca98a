"""What keeps one app target safe while it is applied: the deploy lock, the history record, and
the undo of what it leaves half-done when it fails or is interrupted.

- The lock's token is made before the write, so a write whose answer was lost (Ctrl-C, a reset
  connection) is still released: the release deletes the item only if it holds our token.
- Undo runs newest first: a moved tag points back at the image it named before.
- The history records the outcome: succeeded, failed (with the message) or interrupted.
- What keeps running in AWS on its own (a stack update, a rollout) is noted, to be told at the end.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any, Callable

from ..errors import MvpError


class Guard:
    def __init__(self, world: Any, plan: Any, cluster: Any):
        self.world = world
        self.plan = plan
        self.cluster = cluster
        self.history = world.history(cluster) if plan.kind == "app" else None
        self.token = ""
        self.acted = False
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.running: dict[str, str] = {}  # what AWS goes on doing by itself -> how to follow it

    # --- the lock ---------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the deploy lock (once), right before the target's first change. Only a target that
        got the lock has acted: one refused by another run's lock records nothing."""
        if self.history is None or self.token:
            self.acted = True
            return
        settings = self.world.settings
        owner = f"{self.world.caller} on {socket.gethostname()} (pid {os.getpid()})"
        # Every wait of one run is bounded by wait_timeout; a run has at most three (change set,
        # stack, rollout), plus build and push in ci.release.
        ttl = settings.wait_timeout * 4 + 900
        from ..aws.history import LockHeld

        self.token = uuid.uuid4().hex
        self.locked_at = time.monotonic()
        try:
            self.history.acquire(self.plan.project, owner, ttl, token=self.token)
        except LockHeld:
            self.token = ""  # DynamoDB answered: the lock is another run's, there is nothing of ours
            raise
        self.acted = True

    def release(self) -> None:
        if self.history is None or not self.token:
            return
        token, self.token = self.token, ""
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

    def on_undo(self, what: str, action: Callable[[], None]) -> None:
        self.undo.append((what, action))

    def forget_undo(self) -> None:
        self.undo.clear()

    def run_undo(self) -> None:
        while self.undo:
            what, action = self.undo.pop()
            try:
                action()
                self.world.reporter.warn(f"{self.plan.key}: {what}")
            except MvpError as exc:
                self.world.reporter.warn(f"{self.plan.key}: could not undo ({what}): {exc}")

    def started_in_aws(self, what: str, follow: str) -> None:
        self.running[what] = follow

    def settled_in_aws(self, what: str) -> None:
        self.running.pop(what, None)

    # --- the history ------------------------------------------------------------------------------

    def record(self, outcome: str, message: str = "", digest: str = "") -> None:
        if self.history is None or not self.acted or not self.plan.action:
            return
        try:
            started = getattr(self, "locked_at", None)
            self.history.record(self.plan.project, action=self.plan.action, commit=self.plan.commit,
                                digest=digest or self.plan.digest, outcome=outcome, by=self.world.caller,
                                message=message,
                                duration=time.monotonic() - started if started is not None else None)
        except MvpError as exc:
            self.world.reporter.warn(f"{self.plan.key}: could not record the {outcome} {self.plan.action}: {exc}")
