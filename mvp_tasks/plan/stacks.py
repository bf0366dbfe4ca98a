"""Planning one CloudFormation stack: read it, compare, and say what would change.

An unchanged stack (same template, parameters and tags) is found without any mutating call. A
changed one gets a change set, the only thing planning creates: it changes no resource, it is how
CloudFormation says what an update would do, and whoever does not execute it deletes it
(`--check`, a refused confirmation, a failed or interrupted run).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping

from ..aws.stacks import UPDATABLE, StackInfo, Stacks, is_in_progress, repair_command
from ..errors import StackBusy, StackFailed
from .steps import EnsureStack, StackAction

if TYPE_CHECKING:
    from ..templates import Template
    from .context import ChangeSetLog

MANAGED_TAG = {"mvp:managed-by": "mvp-tasks"}
# `plan_stack(stack=...)` not given: the stack is read there.
NOT_READ: Any = object()


def plan_stack(stacks: Stacks, *, name: str, template: Template, parameters: Mapping[str, str],
               tags: Mapping[str, str], protect: bool = False, protected: bool = False,
               service: bool = False, poll: float = 1.0,
               change_sets: ChangeSetLog | None = None, stack: StackInfo | None = NOT_READ) -> tuple[EnsureStack | None, StackInfo | None]:
    """The step that brings stack `name` to `template` + `parameters` (None: it is already there),
    and the stack as it is now (None: it does not exist). `stack`: the stack as the caller has
    just read it (None: there is none), so it is not read twice.

    `change_sets` (the world's `ChangeSets`) hears of every change set made here, before CloudFormation
    has even answered, so an interrupt or a failure cannot leave one behind."""
    tags = {**MANAGED_TAG, **tags}
    if stack is NOT_READ:
        stack = stacks.get_stack(name)
    common = dict(stack=name, template=template, parameters=dict(parameters), tags=tags, protected=protected,
                  service=service)
    if stack is not None and stack.status == "ROLLBACK_COMPLETE":
        # A failed create leaves a stack that can only be deleted; re-creating it is the only way on.
        return EnsureStack(action=StackAction.RECREATE, protect=protect, old_stack_id=stack.stack_id,
                           **common), stack
    if stack is None or stack.status == "REVIEW_IN_PROGRESS":
        # REVIEW_IN_PROGRESS: only an unexecuted CREATE change set exists; it holds no resources.
        return EnsureStack(action=StackAction.CREATE, protect=protect,
                           old_stack_id=stack.stack_id if stack is not None else "", **common), stack
    check_stack_updatable(stack, repair_command(tags))
    protection_change = protect and not stack.termination_protection
    effective = effective_parameters(template, parameters)
    if is_unchanged(stacks, stack, template, effective, tags):
        return (EnsureStack(action=StackAction.PROTECT, protect=True, **common) if protection_change else None), stack
    change_set = f"mvp-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    if change_sets is not None:
        change_sets.add(name, change_set)
    stacks.create_change_set(name, template.body, parameters, tags, change_set)
    changes = stacks.wait_for_change_set(name, change_set, timeout=600, poll=max(poll, 1) / 2)
    if changes is None:  # CloudFormation found nothing to do (and the change set is gone)
        if change_sets is not None:
            change_sets.done(name, change_set)
        return (EnsureStack(action=StackAction.PROTECT, protect=True, **common) if protection_change else None), stack
    old = {k: _list_value(v) for k, v in stack.parameters.items()}
    parameter_changes = tuple((k, old.get(k, ""), v) for k, v in sorted(effective.items())
                              if old.get(k) != v and not _no_echo(template, k))
    return EnsureStack(action=StackAction.UPDATE, protect=protection_change, change_set=change_set,
                       changes=tuple(c.line() for c in changes), parameter_changes=parameter_changes,
                       **common), stack


def check_stack_updatable(stack: StackInfo, repair: str) -> None:
    """Refuse a stack CloudFormation is still at work on (`StackBusy`) or one left where no update
    can start (`StackFailed`), naming what gets it moving again (`repair`: the tool's repair task
    for it, "" for none)."""
    if is_in_progress(stack.status):
        raise StackBusy(
            f"stack {stack.name} is {stack.status}: another operation is running",
            "wait for it to finish (watch `inv cluster.status` or `inv app.status`), then re-run"
            + (f"; an update that hangs is cancelled with `{repair}`" if repair and stack.status == "UPDATE_IN_PROGRESS"
               else ""),
        )
    if stack.status not in UPDATABLE:
        raise StackFailed(
            f"stack {stack.name} is {stack.status} and cannot be updated"
            + (f" ({stack.status_reason})" if stack.status_reason else ""),
            _stuck_hint(stack.status, repair),
        )


def _stuck_hint(status: str, repair: str) -> str:
    if status == "ROLLBACK_COMPLETE":
        return "its first create failed: deploy it again, which deletes and re-creates it"
    if repair and status == "UPDATE_ROLLBACK_FAILED":
        return f"continue its rollback with `{repair}`, then re-run"
    if repair and status == "DELETE_FAILED":
        return f"finish its delete with `{repair}` (it keeps what cannot be deleted), then re-run"
    return "fix it in the CloudFormation console (e.g. continue the rollback or delete the stack), then re-run"


def stacks_as(world: Any, role_arn: str) -> Stacks:
    """The world's stacks, CloudFormation acting as `role_arn` ("": as the caller) for the change
    sets planning makes."""
    stacks = world.stacks()
    return stacks.with_role(role_arn) if role_arn else stacks


def with_role(step: EnsureStack | None, role_arn: str) -> EnsureStack | None:
    """`step` applied with CloudFormation acting as `role_arn`."""
    return dataclasses.replace(step, role_arn=role_arn) if step is not None and role_arn else step


def effective_parameters(template: Template, parameters: Mapping[str, str]) -> dict[str, str]:
    """Every declared parameter's value as DescribeStacks would list it: given, else its default."""
    effective = {}
    for name, spec in template.parameters.items():
        if name in parameters:
            effective[name] = parameters[name]
        elif "Default" in spec:
            default = spec["Default"]
            effective[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
    return effective


def _no_echo(template: Template, name: str) -> bool:
    return template.parameters.get(name, {}).get("NoEcho") in (True, "true", "True")


def _list_value(value: str) -> str:
    # AWS reads List<...> parameters back as "a,b"; the emulator as "['a', 'b']". Same value.
    if value.startswith("[") and value.endswith("]"):
        import ast

        try:
            items = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
        if isinstance(items, list):
            return ",".join(str(i) for i in items)
    return value


def is_unchanged(stacks: Stacks, stack: StackInfo, template: Template, effective: Mapping[str, str],
                 tags: Mapping[str, str], *, unknown_is_same: bool = False) -> bool:
    """Whether the stack has this template, these parameters and tags. DescribeStacks lists every
    parameter, defaults included; NoEcho ones read back as '****': a plan never takes them for
    unchanged (`unknown_is_same` False: an update is planned, its change set says); a drift
    check, which can only say what it knows, leaves them out (`unknown_is_same`)."""
    hidden = {name for name in template.parameters if _no_echo(template, name)}
    if hidden and not unknown_is_same:
        return False
    now = {k: _list_value(v) for k, v in stack.parameters.items() if k not in hidden}
    if now != {k: v for k, v in effective.items() if k not in hidden}:
        return False
    if any(stack.tags.get(k) != v for k, v in tags.items()):
        return False
    deployed = stacks.get_template_body(stack.name)
    if deployed.strip() == template.body.strip():
        return True
    if template.body.lstrip().startswith("{"):
        # JSON templates come back from the API parsed (and re-serialised here): compare the data.
        import json

        try:
            return json.loads(deployed) == json.loads(template.body)
        except ValueError:
            return False
    return False
