"""CloudFormation, one small method per step (after aws-cli's `deployer.py`).

`Stacks(client)` takes an injected boto3 CloudFormation client; it neither prints nor reads
config. Progress goes to an `on_event` callback; failures are raised as `MvpError`s.

`Stacks(client, role_arn=ARN)` (or `stacks.with_role(ARN)`) gives CloudFormation a service role:
every CreateStack, CreateChangeSet and DeleteStack it sends carries `RoleARN`, so CloudFormation
makes, changes and deletes the stack's resources with that role's permissions, not the caller's
(docs/deploy-role.md). ExecuteChangeSet takes no role: it uses the one its change set was made with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from ..errors import AwsError, StackBusy, StackFailed, TemplateError, WaitTimeout
from .clients import aws_errors, error_code, error_message

# Settled states a stack can be updated from.
UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
             "IMPORT_ROLLBACK_COMPLETE"}
SUCCESS = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}
# Every state but these counts as a live stack (DELETE_COMPLETE stacks linger in ListStacks).
LIVE_FILTER = [
    "CREATE_IN_PROGRESS", "CREATE_FAILED", "CREATE_COMPLETE", "ROLLBACK_IN_PROGRESS", "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE", "DELETE_IN_PROGRESS", "DELETE_FAILED", "UPDATE_IN_PROGRESS",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE", "UPDATE_FAILED", "UPDATE_ROLLBACK_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE",
    "REVIEW_IN_PROGRESS", "IMPORT_IN_PROGRESS", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_IN_PROGRESS",
    "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE",
]
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
# CloudFormation refuses inline template bodies above this size (larger ones go through S3).
MAX_TEMPLATE_BODY = 51_200


def is_in_progress(status: str) -> bool:
    # REVIEW_IN_PROGRESS is a settled state: a stack that only holds a never-executed change set.
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


@dataclass(frozen=True)
class StackInfo:
    name: str
    stack_id: str
    status: str
    status_reason: str = ""
    outputs: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None
    last_updated: datetime | None = None
    termination_protection: bool = False
    # The id of the stack's latest operation (DescribeStacks' LastOperations); "" where unknown.
    last_operation_id: str = ""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "StackInfo":
        return cls(
            name=data["StackName"],
            stack_id=data.get("StackId", ""),
            status=data["StackStatus"],
            status_reason=data.get("StackStatusReason", ""),
            outputs={o["OutputKey"]: o.get("OutputValue", "") for o in data.get("Outputs", [])},
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in data.get("Parameters", [])},
            tags={t["Key"]: t["Value"] for t in data.get("Tags", [])},
            created=data.get("CreationTime"),
            last_updated=data.get("LastUpdatedTime"),
            termination_protection=bool(data.get("EnableTerminationProtection", False)),
            last_operation_id=next((o.get("OperationId", "") for o in data.get("LastOperations", [])
                                    if o.get("OperationId")), ""),
        )


@dataclass(frozen=True)
class StackResource:
    """One resource of a stack, as ListStackResources sums it up."""

    logical_id: str
    resource_type: str
    physical_id: str
    status: str


@dataclass(frozen=True)
class StackEvent:
    event_id: str
    timestamp: datetime | None
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""
    operation_id: str = ""  # the operation it belongs to ("" where the API does not say)

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED")

    def line(self) -> str:
        when = self.timestamp.strftime("%H:%M:%S") if self.timestamp else "--:--:--"
        text = f"{when} {self.status:<28} {self.resource_type} {self.logical_id}"
        if self.reason:
            text += f": {self.reason}"
        return text


@dataclass(frozen=True)
class Change:
    action: str  # Add | Modify | Remove | Import | Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""

    def line(self) -> str:
        sign = {"Add": "+", "Remove": "-"}.get(self.action, "~")
        text = f"{sign} {self.resource_type} {self.logical_id}"
        if self.action == "Modify" and self.replacement in ("True", "Conditional"):
            text += f" (replacement: {self.replacement})"
        return text


def _event(data: Mapping[str, Any]) -> StackEvent:
    return StackEvent(
        event_id=data.get("EventId", ""),
        timestamp=data.get("Timestamp"),
        logical_id=data.get("LogicalResourceId", ""),
        resource_type=data.get("ResourceType", ""),
        status=data.get("ResourceStatus", ""),
        reason=data.get("ResourceStatusReason", ""),
        operation_id=data.get("OperationId", ""),
    )


def _operation_event(data: Mapping[str, Any]) -> StackEvent:
    """One of DescribeEvents' operation events: a resource's failure, or a failed validation (no
    resource status: its reason and path are the validation's)."""
    reason = data.get("ResourceStatusReason", "")
    if not reason and data.get("ValidationStatusReason"):
        reason = data["ValidationStatusReason"]
        if data.get("ValidationPath"):
            reason += f" (at {data['ValidationPath']})"
    return StackEvent(
        event_id=data.get("EventId", ""),
        timestamp=data.get("Timestamp"),
        logical_id=data.get("LogicalResourceId", ""),
        resource_type=data.get("ResourceType", ""),
        status=data.get("ResourceStatus") or ("VALIDATION_FAILED" if data.get("EventType") == "VALIDATION_ERROR"
                                              else f"{data.get('EventType') or 'OPERATION'}_FAILED"),
        reason=reason,
        operation_id=data.get("OperationId", ""),
    )


# Events that only echo the real cause, listed after it by CloudFormation.
NOISE = ("Resource creation cancelled", "Resource update cancelled", "The following resource(s) failed")


def failure_summary(events: Iterable[StackEvent]) -> list[StackEvent]:
    """The failed resource events that explain a failure, oldest first: root causes rather than their
    echoes, and one per resource (its first failure: what the rollback reports later follows from it)."""
    failed = [e for e in events if e.failed and e.reason]
    causes = [e for e in failed if not e.reason.startswith(NOISE)]
    ordered = sorted(causes or failed, key=lambda e: (e.timestamp is None, e.timestamp or 0))
    resources = [e for e in ordered if e.resource_type != "AWS::CloudFormation::Stack"] or ordered
    seen: set[str] = set()
    out = []
    for event in resources:
        if event.logical_id not in seen:
            seen.add(event.logical_id)
            out.append(event)
    return out


def blocking_resources(events: Iterable[StackEvent]) -> list[StackEvent]:
    """The resources that hold a stuck stack (UPDATE_ROLLBACK_FAILED, DELETE_FAILED), as its last
    operation left them: each resource's latest event since that operation began, where it failed.
    `events`: the stack's events, oldest first."""
    events = list(events)
    start = 0
    for i, event in enumerate(events):
        # The stack's own event that began its latest rollback or delete.
        if event.resource_type == "AWS::CloudFormation::Stack" and event.status in (
                "UPDATE_ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
            start = i
    latest: dict[str, StackEvent] = {}
    for event in events[start:]:
        if event.resource_type != "AWS::CloudFormation::Stack":
            latest[event.logical_id] = event
    return [e for e in latest.values() if e.failed]


class Stacks:
    """The CloudFormation steps the tasks need, on an injected client."""

    def __init__(self, client, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, role_arn: str = ""):
        self.client = client
        self.sleep = sleep
        self.clock = clock
        self.role_arn = role_arn

    def with_role(self, role_arn: str) -> "Stacks":
        """The same steps on the same client, CloudFormation acting as `role_arn` ("": as the caller)."""
        return Stacks(self.client, sleep=self.sleep, clock=self.clock, role_arn=role_arn)

    def _role(self) -> dict[str, str]:
        # Omitted rather than empty: CloudFormation refuses RoleARN="" (it must be an ARN).
        return {"RoleARN": self.role_arn} if self.role_arn else {}

    # --- reading ------------------------------------------------------------------------------

    def get_stack(self, name: str) -> StackInfo | None:
        try:
            with aws_errors():
                data = self.client.describe_stacks(StackName=name)["Stacks"]
        except AwsError as exc:
            # CloudFormation has no NotFound code: a missing stack is a ValidationError.
            if error_code(exc.__cause__) == "ValidationError" and "does not exist" in error_message(exc.__cause__):
                return None
            raise
        return StackInfo.from_api(data[0]) if data else None

    def list_live_stack_names(self) -> list[str]:
        names = []
        with aws_errors():
            paginator = self.client.get_paginator("list_stacks")
            for page in paginator.paginate(StackStatusFilter=LIVE_FILTER):
                names.extend(s["StackName"] for s in page.get("StackSummaries", []))
        return sorted(set(names))

    def list_stacks_tagged(self, key: str, value: str) -> list[str]:
        """Live stacks carrying tag `key=value` (the tool tags app stacks with their cluster)."""
        names = []
        with aws_errors():
            for page in self.client.get_paginator("describe_stacks").paginate():
                for data in page.get("Stacks", []):
                    tags = {t["Key"]: t["Value"] for t in data.get("Tags", [])}
                    if tags.get(key) == value and data.get("StackStatus") != "DELETE_COMPLETE":
                        names.append(data["StackName"])
        return sorted(set(names))

    def list_stacks_with_tag(self, key: str) -> list[StackInfo]:
        """Live stacks carrying tag `key` whatever its value (the tool's own stacks: `mvp:cluster`)."""
        found: dict[str, StackInfo] = {}
        with aws_errors():
            for page in self.client.get_paginator("describe_stacks").paginate():
                for data in page.get("Stacks", []):
                    if data.get("StackStatus") == "DELETE_COMPLETE":
                        continue
                    if any(t.get("Key") == key for t in data.get("Tags", [])):
                        found[data["StackName"]] = StackInfo.from_api(data)
        return [found[name] for name in sorted(found)]

    def list_stack_resources(self, name: str) -> list[StackResource]:
        """Every resource of the stack (`name`: its name or id), every page."""
        resources = []
        with aws_errors():
            for page in self.client.get_paginator("list_stack_resources").paginate(StackName=name):
                resources.extend(StackResource(r.get("LogicalResourceId", ""), r.get("ResourceType", ""),
                                               r.get("PhysicalResourceId", ""), r.get("ResourceStatus", ""))
                                 for r in page.get("StackResourceSummaries", []))
        return resources

    def get_template_body(self, name: str) -> str:
        with aws_errors():
            body = self.client.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
        if not isinstance(body, str):
            # boto3 hands JSON templates back already parsed.
            import json

            body = json.dumps(body)
        return body

    def get_events(self, name: str, after_event_id: str = "", limit_pages: int = 5) -> list[StackEvent]:
        """Events newer than `after_event_id`, oldest first (the API lists newest first)."""
        events: list[StackEvent] = []
        with aws_errors():
            paginator = self.client.get_paginator("describe_stack_events")
            for n, page in enumerate(paginator.paginate(StackName=name)):
                for data in page.get("StackEvents", []):
                    if after_event_id and data.get("EventId") == after_event_id:
                        return list(reversed(events))
                    events.append(_event(data))
                if n + 1 >= limit_pages:
                    break
        return list(reversed(events))

    def get_operation_failures(self, name: str, operation_id: str = "",
                               since: datetime | None = None) -> list[StackEvent] | None:
        """The failed events of one operation (DescribeEvents, failures only): by `operation_id`,
        else the stack's from `since` on. None where the API does not offer DescribeEvents."""
        if not hasattr(self.client, "describe_events"):  # botocore before DescribeEvents (2025)
            return None
        query: dict[str, Any] = {"StackName": name, "Filters": {"FailedEvents": True}}
        if operation_id:
            query["OperationId"] = operation_id
        events: list[StackEvent] = []
        try:
            with aws_errors():
                token = ""
                for _ in range(10):
                    page = self.client.describe_events(**query, **({"NextToken": token} if token else {}))
                    events.extend(_operation_event(e) for e in page.get("OperationEvents", []))
                    token = page.get("NextToken", "")
                    if not token:
                        break
        except AwsError as exc:
            if error_code(exc.__cause__) in ("InvalidAction", "UnknownOperationException", "UnknownOperation",
                                              "NotImplemented", "AccessDenied", "AccessDeniedException"):
                return None  # an endpoint without it, or a role that may not call it: the stack events say enough
            raise
        if not operation_id and since is not None:
            # A second's slack: an operation's validation events are written just before its first
            # stack event, and clocks round.
            from datetime import timedelta

            start = _aware(since) - timedelta(seconds=1)
            events = [e for e in events if e.timestamp is None or _aware(e.timestamp) >= start]
        return sorted(events, key=lambda e: (e.timestamp is None, e.timestamp or 0))

    def get_latest_event_id(self, name: str) -> str:
        with aws_errors():
            page = self.client.describe_stack_events(StackName=name)
        events = page.get("StackEvents", [])
        return events[0].get("EventId", "") if events else ""

    # --- changing -----------------------------------------------------------------------------

    def create_stack(self, name: str, body: str, parameters: Mapping[str, str], tags: Mapping[str, str],
                     protect: bool = False) -> str:
        with aws_errors():
            response = self.client.create_stack(
                StackName=name,
                TemplateBody=body,
                Parameters=_parameters(parameters),
                Tags=_tags(tags),
                Capabilities=CAPABILITIES,
                EnableTerminationProtection=protect,
                OnFailure="ROLLBACK",
                **self._role(),
            )
        return response.get("StackId", "")

    def create_change_set(self, name: str, body: str, parameters: Mapping[str, str],
                          tags: Mapping[str, str], change_set_name: str) -> str:
        try:
            with aws_errors():
                response = self.client.create_change_set(
                    StackName=name,
                    ChangeSetName=change_set_name,
                    ChangeSetType="UPDATE",
                    TemplateBody=body,
                    Parameters=_parameters(parameters),
                    Tags=_tags(tags),
                    Capabilities=CAPABILITIES,
                    Description="mvp-tasks preview",
                    **self._role(),
                )
        except AwsError as exc:
            raise self._busy_or(exc, name) from None
        return response.get("Id", change_set_name)

    def wait_for_change_set(self, name: str, change_set: str, timeout: float, poll: float) -> list[Change] | None:
        """The changes a change set holds, or None when it holds none (then it is deleted)."""
        deadline = self.clock() + timeout
        while True:
            with aws_errors():
                data = self.client.describe_change_set(StackName=name, ChangeSetName=change_set)
            status = data.get("Status", "")
            if status == "CREATE_COMPLETE":
                changes = []
                for item in data.get("Changes", []):
                    rc = item.get("ResourceChange", {})
                    changes.append(Change(rc.get("Action", ""), rc.get("LogicalResourceId", ""),
                                          rc.get("ResourceType", ""), rc.get("Replacement", "")))
                # Later pages of a very large change set are fetched too.
                token = data.get("NextToken")
                while token:
                    with aws_errors():
                        page = self.client.describe_change_set(StackName=name, ChangeSetName=change_set,
                                                               NextToken=token)
                    for item in page.get("Changes", []):
                        rc = item.get("ResourceChange", {})
                        changes.append(Change(rc.get("Action", ""), rc.get("LogicalResourceId", ""),
                                              rc.get("ResourceType", ""), rc.get("Replacement", "")))
                    token = page.get("NextToken")
                return changes
            if status == "FAILED":
                reason = data.get("StatusReason", "")
                # An unchanged stack gives a FAILED change set; it is a success, not an error.
                if "didn't contain changes" in reason or "No updates are to be performed" in reason:
                    self.delete_change_set(name, change_set)
                    return None
                self.delete_change_set(name, change_set)
                raise TemplateError(f"stack {name}: CloudFormation rejected the change: {reason}")
            if self.clock() >= deadline:
                raise WaitTimeout(f"stack {name}: change set {change_set} still {status} after {timeout:.0f} s")
            self.sleep(poll)

    def execute_change_set(self, name: str, change_set: str) -> None:
        try:
            with aws_errors():
                self.client.execute_change_set(StackName=name, ChangeSetName=change_set)
        except AwsError as exc:
            raise self._busy_or(exc, name) from None

    def delete_change_set(self, name: str, change_set: str) -> None:
        with aws_errors():
            self.client.delete_change_set(StackName=name, ChangeSetName=change_set)

    def delete_stack(self, name: str) -> None:
        try:
            with aws_errors():
                self.client.delete_stack(StackName=name, **self._role())
        except AwsError as exc:
            raise self._busy_or(exc, name) from None

    def delete_stack_retaining(self, name: str, retain: Iterable[str]) -> None:
        """Delete a DELETE_FAILED stack again, leaving the resources `retain` names in place."""
        try:
            with aws_errors():
                self.client.delete_stack(StackName=name, RetainResources=list(retain), **self._role())
        except AwsError as exc:
            raise self._busy_or(exc, name) from None

    def continue_update_rollback(self, name: str, skip: Iterable[str] = ()) -> None:
        """Move an UPDATE_ROLLBACK_FAILED stack on to UPDATE_ROLLBACK_COMPLETE, not rolling back `skip`
        (CloudFormation then counts them as rolled back, whatever they really are)."""
        try:
            with aws_errors():
                self.client.continue_update_rollback(StackName=name, ResourcesToSkip=list(skip), **self._role())
        except AwsError as exc:
            raise self._busy_or(exc, name) from None

    def cancel_update(self, name: str) -> None:
        """Stop an update in progress; CloudFormation rolls it back."""
        with aws_errors():
            self.client.cancel_update_stack(StackName=name)

    def set_termination_protection(self, name: str, enabled: bool) -> None:
        with aws_errors():
            self.client.update_termination_protection(StackName=name, EnableTerminationProtection=enabled)

    @staticmethod
    def _busy_or(exc: AwsError, name: str) -> AwsError:
        message = error_message(exc.__cause__) if exc.__cause__ else str(exc)
        if "_IN_PROGRESS state" in message or "is in " in message and "IN_PROGRESS" in message:
            return StackBusy(
                f"stack {name} is busy with another operation ({message})",
                "wait for it to finish (`inv cluster.status`), then re-run",
            )
        return exc

    # --- waiting ------------------------------------------------------------------------------

    def wait_for_stack(self, name: str, *, timeout: float, poll: float, after_event_id: str = "",
                       on_event: Callable[[StackEvent], None] | None = None,
                       stack_id: str = "") -> tuple[StackInfo | None, list[StackEvent]]:
        """Poll until the stack settles, passing each new event to `on_event`.

        A polling loop rather than a botocore waiter: waiters cannot stream events while they wait.
        Returns the settled stack (None once deleted) and every event seen.
        """
        deadline = self.clock() + timeout
        seen: list[StackEvent] = []
        last = after_event_id
        # Deleted stacks are only found by their id.
        ref = stack_id or name
        # Back-off while nothing happens (CloudFormation throttles Describe* at a few calls per
        # second per account, shared by every stack a fleet run follows); back to `poll` on news.
        delay = poll
        while True:
            stack = self.get_stack(ref)
            try:
                new = self.get_events(ref, after_event_id=last) if stack is not None else []
            except AwsError:
                new = []
            for event in new:
                seen.append(event)
                if on_event:
                    on_event(event)
            if new:
                last = new[-1].event_id
            if stack is None or stack.status == "DELETE_COMPLETE":
                return None, seen
            if not is_in_progress(stack.status):
                return stack, seen
            if self.clock() >= deadline:
                raise WaitTimeout(
                    f"stack {name} is still {stack.status} after {timeout:.0f} s",
                    "CloudFormation keeps going on its own: check it with `inv cluster.status` and re-run when it settles",
                )
            delay = poll if new else min(delay * 1.5, poll * 4)
            self.sleep(min(delay, max(deadline - self.clock(), 0.01)))

    def check_settled(self, stack: StackInfo | None, events: list[StackEvent], expected: set[str],
                      action: str) -> None:
        """Raise `StackFailed` naming the failing resources unless the stack reached an expected state."""
        status = stack.status if stack else "DELETE_COMPLETE"
        if status in expected:
            return
        causes = failure_summary(self.get_failed_events(stack, events))
        if causes:
            # One part per failing resource; the target's failure stays one line.
            detail = "; ".join(f"{e.logical_id} ({e.resource_type}) {e.status}: {_one_line(e.reason)}"
                               for e in causes[:8])
            if len(causes) > 8:
                detail += f"; and {len(causes) - 8} more"
        else:
            detail = ((stack.status_reason if stack else "") or _rollback_reason(events)
                      or "no failure events were reported")
        hint = repair_hint(stack)
        raise StackFailed(f"{action} of stack {stack.name if stack else ''} ended in {status}: {detail}", hint)

    def get_failed_events(self, stack: StackInfo | None, events: list[StackEvent]) -> list[StackEvent]:
        """The failures of the operation `events` (its stack events, from its first on) belong to:
        DescribeEvents by its operation id where the API names one (every event of the operation,
        validation failures included, however long ago they scrolled by), else the stack events."""
        failed = [e for e in events if e.failed]
        if stack is None:
            return failed
        operation_id = next((e.operation_id for e in events if e.operation_id), "") or stack.last_operation_id
        since = next((e.timestamp for e in events if e.timestamp is not None), None)
        if not operation_id and since is None:
            return failed
        try:
            found = self.get_operation_failures(stack.stack_id or stack.name, operation_id, since=since)
        except AwsError:
            found = None  # the stack events are enough to go on
        return (found or []) + failed


def repair_hint(stack: StackInfo | None) -> str:
    """What to run for a stack left stuck (UPDATE_ROLLBACK_FAILED, DELETE_FAILED, ...), "" otherwise."""
    if stack is None or stack.status not in REPAIRABLE:
        return ""
    command = repair_command(stack.tags)
    return f"get it moving again: {command}" if command else ""


# The stuck states `inv cluster.repair` / `inv app.repair` get moving again.
REPAIRABLE = {"UPDATE_ROLLBACK_FAILED", "UPDATE_IN_PROGRESS", "DELETE_FAILED"}


def repair_command(tags: Mapping[str, str]) -> str:
    """The task that repairs a stack of the tool's, from the tags it gave it ("": not one of them)."""
    if tags.get("mvp:project") and tags.get("mvp:cluster"):
        return f"inv app.repair {tags['mvp:project']} --cluster {tags['mvp:cluster']}"
    if tags.get("mvp:cluster"):
        return f"inv cluster.repair {tags['mvp:cluster']}"
    return ""


def _rollback_reason(events: Iterable[StackEvent]) -> str:
    """Why the stack's own rollback began, as its event says, where no resource failed (a cancelled
    update: "User Initiated"); "" when no such event was seen."""
    for event in reversed(list(events)):
        if event.resource_type == "AWS::CloudFormation::Stack" and event.status.endswith("ROLLBACK_IN_PROGRESS") \
                and event.reason:
            return f"its rollback began: {_one_line(event.reason)}"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _aware(moment: datetime) -> datetime:
    from datetime import timezone

    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _parameters(parameters: Mapping[str, str]) -> list[dict[str, str]]:
    # Sorted, so an unchanged stack always sends an identical list (change sets compare it).
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(parameters.items())]


def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
