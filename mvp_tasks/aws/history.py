"""Deploy history and deploy locks, in the cluster's DynamoDB table (output `DeployHistoryTable`).

Why DynamoDB: it survives machines and CI runners, a conditional write makes a real lock (two
deploys of one app to one cluster cannot interleave), and one small on-demand table per cluster
costs nothing when idle. SSM parameters would need read-modify-write races for the lock.

Items (pk, sk):
- `app#<project>`, `at#<ISO time>`: one deploy, promotion, rollback, update or release;
- `lock#<project>`, `lock`: the deploy lock, with an owner, a token and an expiry.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import AwsError
from .clients import aws_errors, error_code


class LockHeld(AwsError):
    """Another run holds the deploy lock of this app in this cluster."""


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


def github_run() -> tuple[str, str]:
    """(actor, run URL) inside GitHub Actions, else ("", "")."""
    import os

    actor = os.environ.get("GITHUB_ACTOR", "")
    server, repo, run = (os.environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    url = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""
    return actor, url


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class History:
    def __init__(self, client, table: str, cluster: str, clock=time.time):
        self.client = client
        self.table = table
        self.cluster = cluster
        self.clock = clock

    def record(self, project: str, *, action: str, commit: str, digest: str, outcome: str, by: str,
               message: str = "", duration: float | None = None) -> Record:
        actor, run_url = github_run()
        record = Record(project, self.cluster, action, commit, digest, outcome, by, now_iso(), message[:500],
                        f"{duration:.1f}" if duration is not None else "", actor, run_url)
        item = {
            "pk": {"S": f"app#{project}"},
            "sk": {"S": f"at#{record.at}"},
            **{k: {"S": v} for k, v in record.__dict__.items() if v},
        }
        with aws_errors():
            self.client.put_item(TableName=self.table, Item=item)
        return record

    def get_records(self, project: str, limit: int = 50) -> list[Record]:
        """Newest first."""
        with aws_errors():
            data = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :at)",
                ExpressionAttributeValues={":pk": {"S": f"app#{project}"}, ":at": {"S": "at#"}},
                ScanIndexForward=False,
                Limit=limit,
            )
        return [Record.from_item(i) for i in data.get("Items", [])]

    def get_current(self, project: str) -> Record | None:
        """The newest successful record: what runs now, as far as the history knows."""
        return next((r for r in self.get_records(project) if r.succeeded and r.commit), None)

    # --- the deploy lock -------------------------------------------------------------------

    def acquire(self, project: str, owner: str, ttl: float, token: str = "", _retry: bool = True) -> str:
        """Take the lock with `token` (made by the caller *before* the write, so that a write whose
        answer is lost to an interrupt can still be released: `release(project, token)`)."""
        token = token or uuid.uuid4().hex
        now = int(self.clock())
        try:
            with aws_errors():
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": f"lock#{project}"},
                        "sk": {"S": "lock"},
                        "owner": {"S": owner},
                        "token": {"S": token},
                        "acquired_at": {"S": now_iso()},
                        "expires_at": {"N": str(now + int(ttl))},
                    },
                    # Free, or left behind by a run that died: its expiry has passed.
                    ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
            holder = self.get_lock(project)
            if holder is None and _retry:
                # Released between our write and our read: try once more.
                return self.acquire(project, owner, ttl, token, _retry=False)
            holder = holder or {}
            expires = holder.get("expires_at")
            until = datetime.fromtimestamp(int(expires), timezone.utc).strftime("%H:%M:%S UTC") if expires else "?"
            raise LockHeld(
                f"another deploy of {project} to {self.cluster} is running "
                f"(held by {holder.get('owner', '?')} since {holder.get('acquired_at', '?')})",
                f"wait for it to finish; a lock left by a run that died expires at {until}",
            ) from None
        return token

    def get_lock(self, project: str) -> dict[str, str] | None:
        with aws_errors():
            item = self.client.get_item(TableName=self.table,
                                        Key={"pk": {"S": f"lock#{project}"}, "sk": {"S": "lock"}},
                                        ConsistentRead=True).get("Item")
        if not item:
            return None
        return {k: next(iter(v.values())) for k, v in item.items()}

    def release(self, project: str, token: str) -> None:
        try:
            with aws_errors():
                self.client.delete_item(
                    TableName=self.table,
                    Key={"pk": {"S": f"lock#{project}"}, "sk": {"S": "lock"}},
                    # Only our own lock: if it expired and someone else took it, it is theirs now.
                    ConditionExpression="#t = :token",
                    ExpressionAttributeNames={"#t": "token"},
                    ExpressionAttributeValues={":token": {"S": token}},
                )
        except AwsError as exc:
            if error_code(exc.__cause__) != "ConditionalCheckFailedException":
                raise
