"""The deploy store: every cluster's deploy history and deploy locks, in one DynamoDB table per
account and region that the tool owns (see `location.py` for where that table lives).

Why DynamoDB: it survives machines and CI runners, a conditional write makes a real lock (two
deploys of one app to one cluster cannot interleave), and one small on-demand table costs nothing
when idle. SSM parameters would need read-modify-write races for the lock.

Items (pk, sk):
- `app#<cluster>#<project>`, `at#<ISO time>`: one deploy, promotion, rollback, update, release,
  destroy or unlock, with its outcome;
- `lock#<cluster>#<project>`, `lock`: the deploy lock, a *lease*: an owner, a token, the host and
  pid of the run, and an expiry a heartbeat pushes on (`renew`) while the run lives;
- `migrated#<cluster>`, `from#<table>`: the history of a cluster whose stack kept it (the old
  `DeployHistoryTable` output) was copied here (`migrate`).

Tables of clusters made before the store (`legacy`) keyed items without the cluster
(`app#<project>`); until `cluster.up` migrates them, reads merge both.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from ..aws.clients import aws_errors, error_code
from ..errors import AwsError, MvpError


class LockHeld(AwsError):
    """Another run holds the deploy lock of this app in this cluster."""


class LeaseLost(MvpError):
    """This run's deploy lock was broken (`app.unlock`) or taken over after its lease ran out."""


@dataclass(frozen=True)
class Record:
    project: str
    cluster: str
    action: str
    commit: str
    digest: str
    outcome: str  # succeeded | failed | interrupted
    by: str
    at: str  # ISO 8601, UTC
    message: str = ""
    duration: str = ""  # seconds, from the lock to the record ("" when not measured)
    actor: str = ""  # in GitHub Actions: GITHUB_ACTOR
    run_url: str = ""  # in GitHub Actions: the run's URL

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Record":
        get = lambda k: item.get(k, {}).get("S", "")  # noqa: E731
        return cls(get("project"), get("cluster"), get("action"), get("commit"), get("digest"), get("outcome"),
                   get("by"), get("at"), get("message"), get("duration"), get("actor"), get("run_url"))

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock, as its item says."""

    owner: str
    host: str
    pid: int
    pid_start: str
    token: str
    acquired_at: str
    expires_at: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Holder":
        get = lambda k: next(iter(item.get(k, {"S": ""}).values()))  # noqa: E731
        pid, expires = get("pid"), get("expires_at")
        return cls(get("owner") or "?", get("host"), int(pid) if str(pid).isdigit() else 0, get("pid_start"),
                   get("token"), get("acquired_at") or "?", int(float(expires)) if expires else 0)

    def describe(self) -> str:
        where = f" on {self.host}" if self.host and self.host not in self.owner else ""
        pid = f" (pid {self.pid})" if self.pid and "pid " not in self.owner else ""
        return f"{self.owner}{where}{pid} since {self.acquired_at[:19].replace('T', ' ')}"

    def is_dead_here(self) -> bool:
        """Its run was on this host and its process is gone (or its pid now names another process)."""
        if not self.host or self.host != socket.gethostname() or not self.pid or self.pid == os.getpid():
            return False
        start = process_start(self.pid)
        return start is None or bool(self.pid_start) and start != self.pid_start


def process_start(pid: int) -> str | None:
    """A running process's start time (clock ticks since boot, from /proc), which tells a reused pid
    apart; None: no such process (a zombie counts as gone). "" where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        fields = []
    if fields and fields[0] == "Z":
        return None
    if len(fields) > 19:
        return fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def github_run() -> tuple[str, str]:
    """(actor, run URL) inside GitHub Actions, else ("", "")."""
    actor = os.environ.get("GITHUB_ACTOR", "")
    server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    url = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""
    return actor, url


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _clock_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


class ClusterStore:
    """One cluster's part of the deploy store: its apps' history and deploy locks.

    `legacy`: the table of the cluster's own stack (its `DeployHistoryTable` output) not yet
    migrated; its records are read beside the store's, and nothing is written there."""

    def __init__(self, client: Any, table: str, cluster: str, *, legacy: str = "",
                 clock: Callable[[], float] = time.time):
        self.client = client
        self.table = table
        self.cluster = cluster
        self.legacy = legacy
        self.clock = clock

    # --- keys -------------------------------------------------------------------------------------

    def _app(self, project: str) -> dict:
        return {"S": f"app#{self.cluster}#{project}"}

    def _lock_key(self, project: str) -> dict:
        return {"pk": {"S": f"lock#{self.cluster}#{project}"}, "sk": {"S": "lock"}}

    # --- the history ------------------------------------------------------------------------------

    def record(self, project: str, *, action: str, commit: str, digest: str, outcome: str, by: str,
               message: str = "", duration: float | None = None) -> Record:
        record, item = self._record_item(project, action, commit, digest, outcome, by, message, duration)
        with aws_errors():
            self.client.put_item(TableName=self.table, Item=item)
        return record

    def record_and_release(self, project: str, token: str, **fields: Any) -> bool | None:
        """`record`, and the lock `token` holds released, in one transaction (one round trip where
        a run ends, instead of two). False: the lock was not ours any more, so only the record
        was written (a separate call), and whoever holds the lock now keeps it. None: the
        transaction was cancelled for another reason (a conflicting write), so only the record was
        written and the lock is still to be released (`release`)."""
        from botocore.exceptions import ClientError

        _, item = self._record_item(project, **fields)
        delete = {"TableName": self.table, "Key": self._lock_key(project), "ConditionExpression": "#t = :token",
                  "ExpressionAttributeNames": {"#t": "token"}, "ExpressionAttributeValues": {":token": {"S": token}}}
        with aws_errors():
            try:
                self.client.transact_write_items(
                    TransactItems=[{"Put": {"TableName": self.table, "Item": item}}, {"Delete": delete}])
                return True
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            self.client.put_item(TableName=self.table, Item=item)
        return False if reasons[1:2] == ["ConditionalCheckFailed"] else None

    def _record_item(self, project: str, action: str, commit: str, digest: str, outcome: str, by: str,
                     message: str = "", duration: float | None = None) -> tuple[Record, dict]:
        actor, run_url = github_run()
        record = Record(project, self.cluster, action, commit, digest, outcome, by, now_iso(), message[:500],
                        f"{duration:.1f}" if duration is not None else "", actor, run_url)
        item = {"pk": self._app(project), "sk": {"S": f"at#{record.at}"},
                **{k: {"S": v} for k, v in record.__dict__.items() if v}}
        return record, item

    def _query(self, table: str, pk: str, limit: int) -> list[Record]:
        with aws_errors():
            data = self.client.query(
                TableName=table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :at)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":at": {"S": "at#"}},
                ScanIndexForward=False,
                Limit=limit,
            )
        return [Record.from_item(i) for i in data.get("Items", [])]

    def get_records(self, project: str, limit: int = 50) -> list[Record]:
        """Newest first (the store's, and a not yet migrated cluster table's)."""
        records = self._query(self.table, self._app(project)["S"], limit)
        if self.legacy:
            old = [r if r.cluster else Record(**{**r.__dict__, "cluster": self.cluster})
                   for r in self._query(self.legacy, f"app#{project}", limit)]
            seen = {r.at for r in records}
            records = sorted(records + [r for r in old if r.at not in seen], key=lambda r: r.at, reverse=True)[:limit]
        return records

    def get_current(self, project: str) -> Record | None:
        """The newest successful record: what runs now, as far as the history knows."""
        return next((r for r in self.get_records(project) if r.succeeded and r.commit), None)

    # --- the deploy lock, a lease -----------------------------------------------------------------

    def acquire(self, project: str, owner: str, lease: float, token: str = "",
                on_takeover: Callable[[str], None] | None = None) -> str:
        """Take the lock with `token` (made by the caller *before* the write, so that a write whose
        answer is lost to an interrupt can still be released: `release(project, token)`).

        Free, or its lease ran out: taken. Held by a run on this host whose process is gone: taken
        over at once (`on_takeover` hears of it, in one line). Else `LockHeld`, naming the holder."""
        token = token or uuid.uuid4().hex
        for _ in range(3):
            now = int(self.clock())
            if self._put_lock(project, owner, lease, token, now, "attribute_not_exists(pk) OR expires_at < :now",
                              {":now": {"N": str(now)}}):
                return token
            holder = self.get_lock(project)
            if holder is None:
                continue  # released between our write and our read: try again
            if holder.token == token:
                return token  # our own write, whose answer was lost and retried
            if holder.is_dead_here():
                if self._put_lock(project, owner, lease, token, now, "#t = :theirs",
                                  {":theirs": {"S": holder.token}}, names={"#t": "token"}):
                    if on_takeover is not None:
                        on_takeover(f"took over the deploy lock of {project} in {self.cluster} from "
                                    f"{holder.describe()}: its process is gone")
                    return token
                continue  # someone else took it over first: look again
            raise self._held(project, holder) from None
        raise LockHeld(f"the deploy lock of {project} in {self.cluster} keeps changing hands",
                       "another run is starting right now; try again in a minute")

    def _held(self, project: str, holder: Holder) -> LockHeld:
        return LockHeld(
            f"another deploy of {project} to {self.cluster} is running: held by {holder.describe()}",
            f"wait for it to finish (its lease runs out at {_clock_time(holder.expires_at)} if that run died), "
            f"or break the lock: inv app.unlock {project} --cluster {self.cluster}",
        )

    def _put_lock(self, project: str, owner: str, lease: float, token: str, now: int, condition: str,
                  values: dict, names: dict | None = None) -> bool:
        item = {
            **self._lock_key(project),
            "owner": {"S": owner},
            "host": {"S": socket.gethostname()},
            "pid": {"N": str(os.getpid())},
            "pid_start": {"S": process_start(os.getpid()) or ""},
            "token": {"S": token},
            "acquired_at": {"S": now_iso()},
            "expires_at": {"N": str(now + int(lease))},
        }
        try:
            with aws_errors():
                self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition,
                                     ExpressionAttributeValues=values, **({"ExpressionAttributeNames": names}
                                                                          if names else {}))
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def renew(self, project: str, token: str, lease: float) -> int:
        """The heartbeat: push our lease's expiry on. `LeaseLost` when the lock is no longer ours."""
        expires = int(self.clock()) + int(lease)
        try:
            with aws_errors():
                self.client.update_item(
                    TableName=self.table, Key=self._lock_key(project),
                    UpdateExpression="SET expires_at = :exp",
                    ConditionExpression="#t = :token",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={":exp": {"N": str(expires)}, ":token": {"S": token}},
                )
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
            holder = self.get_lock(project)
            now = f"it is now held by {holder.describe()}" if holder else "it was broken (inv app.unlock)"
            raise LeaseLost(f"lost the deploy lock of {project} in {self.cluster}: {now}",
                            "see who did it: inv app.history " f"{project} --cluster {self.cluster}") from None
        return expires

    def get_lock(self, project: str) -> Holder | None:
        with aws_errors():
            item = self.client.get_item(TableName=self.table, Key=self._lock_key(project),
                                        ConsistentRead=True).get("Item")
        return Holder.from_item(item) if item else None

    def release(self, project: str, token: str) -> bool:
        """Delete our own lock; False when it was not ours any more (broken or taken over)."""
        try:
            with aws_errors():
                self.client.delete_item(
                    TableName=self.table, Key=self._lock_key(project),
                    # Only our own lock: if it expired and someone else took it, it is theirs now.
                    ConditionExpression="#t = :token",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={":token": {"S": token}},
                )
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def break_lock(self, project: str, token: str) -> bool:
        """`app.unlock`: delete the lock that `token` holds (the one a person was shown); False
        when it changed hands meanwhile."""
        return self.release(project, token)

    # --- the history of clusters made before the store --------------------------------------------

    def migrate(self, legacy: str) -> int:
        """Copy the records of the cluster's own old table into the store (idempotent: same keys),
        then mark the cluster migrated. Locks are not copied: they belong to runs of the old tool."""
        copied = 0
        with aws_errors():
            for page in self.client.get_paginator("scan").paginate(TableName=legacy, ConsistentRead=True):
                for item in page.get("Items", []):
                    pk = item.get("pk", {}).get("S", "")
                    if not pk.startswith("app#"):
                        continue
                    project = pk.split("#", 1)[1]
                    self.client.put_item(TableName=self.table, Item={
                        **item, "pk": self._app(project), "cluster": {"S": self.cluster}})
                    copied += 1
            self.client.put_item(TableName=self.table, Item={
                "pk": {"S": f"migrated#{self.cluster}"}, "sk": {"S": f"from#{legacy}"},
                "at": {"S": now_iso()}, "records": {"N": str(copied)}})
        return copied

    def is_migrated(self, legacy: str) -> bool:
        with aws_errors():
            item = self.client.get_item(TableName=self.table, Key={
                "pk": {"S": f"migrated#{self.cluster}"}, "sk": {"S": f"from#{legacy}"}}).get("Item")
        return bool(item)
