"""The deploy store: every cluster's deploy history and deploy locks, in one DynamoDB table per
account and region that the tool owns (see `location.py` for where that table lives).

Why DynamoDB: it survives machines and CI runners, a conditional write makes a real lock (two
deploys of one app to one cluster cannot interleave), and one small on-demand table costs nothing
when idle. SSM parameters would need read-modify-write races for the lock.

Items (pk, sk):
- `app#<cluster>#<project>`, `at#<ISO time>`: one deploy, promotion, rollback, update, release,
  destroy or unlock, with its outcome;
- `lock#<cluster>#<project>`, `lock`: the deploy lock, a *lease*: an owner, a token, the host
  (name, and identity: machine id and PID namespace) and pid of the run, the lease's length, and a
  record version number (`rvn`) that every renewal replaces while the run lives (`renew`);
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
        """A change to what runs that succeeded. A push only moved a cluster's tag (its record says
        who moved it, under the app's lock): nothing rolled, so it is not what runs."""
        return self.outcome == "succeeded" and self.action != "push"


@dataclass(frozen=True)
class Holder:
    """Who holds a deploy lock, as its item says."""

    owner: str
    host: str
    pid: int
    pid_start: str
    token: str
    acquired_at: str
    expires_at: int  # on the holder's clock: shown, and kept for runs of older versions; never compared
    host_id: str = ""  # machine id and PID namespace of the holder's host ("": unknown)
    rvn: str = ""  # record version number: a new one at every renewal ("": a lock of an older version)
    lease: int = 0  # seconds the holder's lease lasts after each renewal (0: unknown)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "Holder":
        get = lambda k: next(iter(item.get(k, {"S": ""}).values()))  # noqa: E731
        whole = lambda v: int(float(v)) if str(v).replace(".", "", 1).lstrip("-").isdigit() else 0  # noqa: E731
        pid = get("pid")
        return cls(get("owner") or "?", get("host"), int(pid) if str(pid).isdigit() else 0, get("pid_start"),
                   get("token"), get("acquired_at") or "?", whole(get("expires_at")), get("host_id"), get("rvn"),
                   whole(get("lease")))

    @property
    def version(self) -> str:
        """What changes whenever the holder renews: its record version number, or (a lock written by
        an older version, which renewed only the expiry) its token and expiry together."""
        return self.rvn or f"{self.token}@{self.expires_at}"

    def describe(self) -> str:
        where = f" on {self.host}" if self.host and self.host not in self.owner else ""
        pid = f" (pid {self.pid})" if self.pid and "pid " not in self.owner else ""
        return f"{self.owner}{where}{pid} since {self.acquired_at[:19].replace('T', ' ')}"

    def liveness_here(self, here: str, start_of: Callable[[int], str | None] | None = None) -> str:
        """"dead": its run was on this very host (same machine id *and* PID namespace) and its
        process is gone, or its pid now names another process; "alive": same host, and it runs;
        "unknown": another host, or one we cannot tell apart (no machine id, no PID namespace: a
        container, macOS), where only its lease can tell."""
        if not here or not self.host_id or self.host_id != here or not self.pid:
            return "unknown"
        if self.pid == os.getpid():
            return "alive"
        start = (start_of or process_start)(self.pid)
        if start is None or bool(self.pid_start) and bool(start) and start != self.pid_start:
            return "dead"
        return "alive"


def process_start(pid: int, proc: str = "/proc", kill: Callable[[int, int], None] = os.kill) -> str | None:
    """A running process's start time (clock ticks since boot, from /proc), which tells a reused pid
    apart; None: no such process (a zombie counts as gone). "" where /proc cannot say (no /proc, as
    on macOS, or another PID namespace's): then the signal-0 probe answers whether it runs."""
    fields: list[str] = []
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        fields = []
    if fields and fields[0] == "Z":
        return None
    if len(fields) > 19:
        return fields[19]
    # No /proc entry proves nothing by itself (no /proc at all on macOS): ask the kernel.
    try:
        kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it runs, as another user
    except OSError:
        pass
    return ""


MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def host_identity(machine_id_files: tuple[str, ...] = MACHINE_ID_FILES, pid_namespace: str = "/proc/self/ns/pid",
                  read: Callable[[str], str] | None = None, readlink: Callable[[str], str] = os.readlink) -> str:
    """This host as a lock's holder names it: its machine id and its PID namespace, so that two
    containers (or PID namespaces) of one machine, which share a hostname and reuse pids, are two
    hosts. "" when either cannot be read: then no holder is ever judged from here by its pid."""
    def read_text(path: str) -> str:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()

    read = read or read_text
    machine = ""
    for path in machine_id_files:
        try:
            machine = read(path).strip()
        except OSError:
            continue
        if machine:
            break
    try:
        namespace = readlink(pid_namespace).strip()
    except OSError:
        namespace = ""
    return f"{machine}/{namespace}" if machine and namespace else ""


def github_run() -> tuple[str, str]:
    """(actor, run URL) inside GitHub Actions, else ("", "")."""
    actor = os.environ.get("GITHUB_ACTOR", "")
    server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    url = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""
    return actor, url


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


_HERE: list[str] = []


def _here() -> str:
    """This host's identity (`host_identity`), read once per process."""
    if not _HERE:
        _HERE.append(host_identity())
    return _HERE[0]


class ClusterStore:
    """One cluster's part of the deploy store: its apps' history and deploy locks.

    `legacy`: the table of the cluster's own stack (its `DeployHistoryTable` output) not yet
    migrated; its records are read beside the store's, and nothing is written there."""

    def __init__(self, client: Any, table: str, cluster: str, *, legacy: str = "",
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, here: Callable[[], str] | None = None):
        self.client = client
        self.table = table
        self.cluster = cluster
        self.legacy = legacy
        self.clock = clock  # the wall clock: only written (records, a lock's expiry for people)
        self.monotonic = monotonic  # what a lease is timed on: this process's own clock
        self.sleep = sleep
        self.here = here or _here

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

    def record_and_release(self, project: str, token: str, *, if_lost: dict[str, str] | None = None,
                           **fields: Any) -> bool | None:
        """`record`, and the lock `token` holds released, in one transaction (one round trip where
        a run ends, instead of two). False: the lock was not ours any more, so only the record
        was written (a separate call, with the fields of `if_lost` over the others), and whoever
        holds the lock now keeps it. None: the transaction was cancelled for another reason (a
        conflicting write), so only the record was written and the lock is still to be released
        (`release`)."""
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
            lost = reasons[1:2] == ["ConditionalCheckFailed"]
            if lost and if_lost:
                _, item = self._record_item(project, **{**fields, **if_lost})
            self.client.put_item(TableName=self.table, Item=item)
        return False if lost else None

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
    #
    # As the Amazon DynamoDB Lock Client does it: every write of the lock (taking it, each renewal)
    # puts a new random record version number (`rvn`) in it. A run that finds the lock held never
    # compares the holder's clock with its own: it reads the version, waits the holder's lease on
    # its *own* monotonic clock, and takes the lock over only if the version is still the one it
    # read (a conditional write on it). A holder that renewed meanwhile has changed the version:
    # its run lives, and the lock stays its own.

    def acquire(self, project: str, owner: str, lease: float, token: str = "",
                on_takeover: Callable[[str], None] | None = None, on_wait: Callable[[str], None] | None = None,
                wait: Callable[[float], None] | None = None) -> str:
        """Take the lock with `token` (made by the caller *before* the write, so that a write whose
        answer is lost to an interrupt can still be released: `release(project, token)`).

        Free: taken. Held by a run on this very host whose process is gone: taken over at once.
        Held by a live run on this host: `LockHeld`, naming the holder. Held by a run we cannot see
        (another host): watched for one of its leases (`on_wait` hears of it, `wait` sleeps): renewed
        meanwhile, `LockHeld`; not renewed, taken over. `on_takeover` hears of a takeover, in one line."""
        token = token or uuid.uuid4().hex
        for _ in range(3):
            if self._put_lock(project, owner, lease, token, "attribute_not_exists(pk)", {}):
                return token
            holder = self.get_lock(project)
            if holder is None:
                continue  # released between our write and our read: try again
            if holder.token == token:
                return token  # our own write, whose answer was lost and retried
            liveness = holder.liveness_here(self.here())
            if liveness == "alive":
                raise self._held(project, holder) from None
            if liveness == "dead":
                why = "its process is gone"
            else:
                holder, why = self._watch(project, holder, lease, on_wait, wait)
                if holder is None:
                    continue  # released while we watched: try again
            if self._take_over(project, owner, lease, token, holder):
                if on_takeover is not None:
                    on_takeover(f"took over the deploy lock of {project} in {self.cluster} from "
                                f"{holder.describe()}: {why}")
                return token
            # Someone else took it over (or it was renewed) first: look again.
        raise LockHeld(f"the deploy lock of {project} in {self.cluster} keeps changing hands",
                       "another run is starting right now; try again in a minute")

    def _watch(self, project: str, holder: Holder, lease: float, on_wait: Callable[[str], None] | None,
               wait: Callable[[float], None] | None) -> tuple[Holder | None, str]:
        """Watch `holder`'s version for one of its leases, timed on our own monotonic clock; the
        holder (None: the lock was released) and why it may be taken over. `LockHeld` if it renews."""
        length = holder.lease or int(lease)
        if on_wait is not None:
            on_wait(f"the deploy lock of {project} in {self.cluster} is held by {holder.describe()}: "
                    f"waiting up to {length} s for it to be renewed (taken over if it is not)")
        wait = wait or self.sleep
        step = max(0.1, min(2.0, length / 10))
        deadline = self.monotonic() + length
        while True:
            left = deadline - self.monotonic()
            if left <= 0:
                return holder, f"not renewed for {length} s (one lease, timed here)"
            wait(min(step, left))
            now = self.get_lock(project)
            if now is None:
                return None, ""
            if now.version != holder.version:
                raise self._held(project, now) from None  # renewed or taken: its run lives

    def _take_over(self, project: str, owner: str, lease: float, token: str, holder: Holder) -> bool:
        """Write our lock over `holder`'s only if it is still the version we judged."""
        if holder.rvn:
            return self._put_lock(project, owner, lease, token, "rvn = :rvn", {":rvn": {"S": holder.rvn}})
        # A lock of an older version: it has no record version, and its renewals moved its expiry.
        return self._put_lock(project, owner, lease, token,
                              "#t = :theirs AND expires_at = :exp AND attribute_not_exists(rvn)",
                              {":theirs": {"S": holder.token}, ":exp": {"N": str(holder.expires_at)}},
                              names={"#t": "token"})

    def _held(self, project: str, holder: Holder) -> LockHeld:
        length = f"{holder.lease} s" if holder.lease else "one lease"
        return LockHeld(
            f"another deploy of {project} to {self.cluster} is running: held by {holder.describe()}",
            f"wait for it to finish (if that run died, its lock is taken over {length} after its last renewal), "
            f"or break the lock: inv app.unlock {project} --cluster {self.cluster}",
        )

    def _put_lock(self, project: str, owner: str, lease: float, token: str, condition: str,
                  values: dict, names: dict | None = None) -> bool:
        now = int(self.clock())
        item = {
            **self._lock_key(project),
            "owner": {"S": owner},
            "host": {"S": socket.gethostname()},
            "host_id": {"S": self.here()},
            "pid": {"N": str(os.getpid())},
            "pid_start": {"S": process_start(os.getpid()) or ""},
            "token": {"S": token},
            "rvn": {"S": uuid.uuid4().hex},
            "lease": {"N": str(int(lease))},
            "acquired_at": {"S": now_iso()},
            # On our clock, for people and for runs of older versions (which compare it): never read here.
            "expires_at": {"N": str(now + int(lease))},
        }
        extra: dict[str, Any] = {}
        if values:
            extra["ExpressionAttributeValues"] = values
        if names:
            extra["ExpressionAttributeNames"] = names
        try:
            with aws_errors():
                self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition, **extra)
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def renew(self, project: str, token: str, lease: float) -> int:
        """The heartbeat, and the check before each step: a new record version (and expiry) on the
        condition that the lock holds our token. `LeaseLost` when the lock is no longer ours."""
        expires = int(self.clock()) + int(lease)
        try:
            with aws_errors():
                self.client.update_item(
                    TableName=self.table, Key=self._lock_key(project),
                    UpdateExpression="SET expires_at = :exp, rvn = :rvn, lease = :lease",
                    ConditionExpression="#t = :token",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={":exp": {"N": str(expires)}, ":rvn": {"S": uuid.uuid4().hex},
                                               ":lease": {"N": str(int(lease))}, ":token": {"S": token}},
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
