"""Plan / show / confirm / act / verify for one CloudFormation stack; shared by cluster and app tasks."""

from __future__ import annotations

import time
from typing import Callable, Mapping

from ..aws.stacks import UPDATABLE, StackInfo, Stacks, is_in_progress
from ..errors import NotConfirmed, StackBusy, StackFailed
from ..report import Outcome, Reporter
from ..templates import Template

MANAGED_TAG = {"mvp:managed-by": "mvp-tasks"}


def stack_events_printer(reporter: Reporter):
    return lambda event: reporter.event(event.line(), failed=event.failed)


def ensure_stack(stacks: Stacks, reporter: Reporter, *, name: str, template: Template,
                 parameters: Mapping[str, str], tags: Mapping[str, str], protect: bool,
                 confirm_question: str = "", timeout: float, poll: float,
                 on_act: Callable[[], None] | None = None) -> Outcome:
    """Create or update `name` so it runs `template` with `parameters`; report and return the outcome.

    `confirm_question` set means the change needs a person's yes (a protected cluster).
    `on_act` runs once, right before the first mutating call (e.g. to take a deploy lock), so a
    run with nothing to do makes no mutating call at all.
    """
    on_act = _once(None if reporter.check else on_act)
    tags = {**MANAGED_TAG, **tags}
    stack = stacks.get_stack(name)
    if stack is not None and is_in_progress(stack.status):
        raise StackBusy(
            f"stack {name} is {stack.status}: another operation is running",
            "wait for it to finish (watch `inv cluster.status` or `inv app.status`), then re-run",
        )

    if stack is not None and stack.status == "ROLLBACK_COMPLETE":
        # A failed create leaves a stack that can only be deleted; re-creating it is the only way on.
        reporter.plan(name, [
            f"- delete stack {name} (ROLLBACK_COMPLETE: its first create failed)",
            f"+ re-create stack {name} ({len(template.resources)} resources)",
        ])
        if reporter.check:
            reporter.changed(name, "would delete and re-create the stack left by a failed create")
            return Outcome.CHANGED
        reporter.confirm(f"delete stack {name} (ROLLBACK_COMPLETE) and create it again")
        confirm_question = ""  # that answer covers the re-create too
        on_act()
        delete_stack(stacks, reporter, stack, timeout=timeout, poll=poll)
        stack = None

    if stack is not None and stack.status == "REVIEW_IN_PROGRESS":
        # Only an unexecuted CREATE change set exists under this name; it holds no resources.
        reporter.plan(name, [f"- empty stack {name} (REVIEW_IN_PROGRESS: a change set was never executed)"])
        if not reporter.check:
            on_act()
            _delete(stacks, reporter, stack, timeout=timeout, poll=poll)
            stack = None

    if stack is None or stack.status == "REVIEW_IN_PROGRESS":
        return _create(stacks, reporter, name=name, template=template, parameters=parameters, tags=tags,
                       protect=protect, confirm_question=confirm_question, timeout=timeout, poll=poll,
                       on_act=on_act)

    if stack.status not in UPDATABLE:
        raise StackFailed(
            f"stack {name} is {stack.status} and cannot be updated"
            + (f" ({stack.status_reason})" if stack.status_reason else ""),
            "fix it in the CloudFormation console (e.g. continue the rollback or delete the stack), then re-run",
        )
    return _update(stacks, reporter, stack=stack, template=template, parameters=parameters, tags=tags,
                   protect=protect, confirm_question=confirm_question, timeout=timeout, poll=poll,
                   on_act=on_act)


def _create(stacks: Stacks, reporter: Reporter, *, name: str, template: Template, parameters: Mapping[str, str],
            tags: Mapping[str, str], protect: bool, confirm_question: str, timeout: float, poll: float,
            on_act: Callable[[], None]) -> Outcome:
    lines = [f"+ stack {name} from {template.label}"]
    lines += [f"+ {rtype} {logical}" + (f" (if {template.conditions[logical]})" if logical in template.conditions else "")
              for logical, rtype in template.resources.items()]
    if protect:
        lines.append("~ termination protection on")
    reporter.plan(name, lines)
    if reporter.check:
        reporter.changed(name, f"would create stack ({len(template.resources)} resources)")
        return Outcome.CHANGED
    if confirm_question:
        reporter.confirm(confirm_question)
    on_act()
    stack_id = stacks.create_stack(name, template.body, parameters, tags, protect=protect)
    with reporter.progress(f"creating stack {name}"):
        final, events = stacks.wait_for_stack(name, stack_id=stack_id, timeout=timeout, poll=poll,
                                              on_event=stack_events_printer(reporter))
    stacks.check_settled(final, events, {"CREATE_COMPLETE"}, "create")
    reporter.changed(name, f"stack created ({final.status})")
    return Outcome.CHANGED


def _update(stacks: Stacks, reporter: Reporter, *, stack: StackInfo, template: Template,
            parameters: Mapping[str, str], tags: Mapping[str, str], protect: bool, confirm_question: str,
            timeout: float, poll: float, on_act: Callable[[], None]) -> Outcome:
    name = stack.name
    protection_change = protect and not stack.termination_protection
    # Same template, parameters and tags as deployed: nothing to do, and no change set (a mutating
    # call) needed to find that out.
    if _is_unchanged(stacks, stack, template, parameters, tags):
        if not protection_change:
            reporter.ok(name, f"up to date ({stack.status})")
            return Outcome.OK
        changes = []
    else:
        change_set = f"mvp-{time.strftime('%Y%m%d%H%M%S')}"
        on_act()
        stacks.create_change_set(name, template.body, parameters, tags, change_set)
        changes = stacks.wait_for_change_set(name, change_set, timeout=min(timeout, 600), poll=max(poll, 1) / 2)
        if changes is None:
            if not protection_change:
                reporter.ok(name, f"no changes ({stack.status})")
                return Outcome.OK
            changes = []
        else:
            lines = [c.line() for c in changes] or ["~ stack settings (parameters, tags or outputs)"]
            reporter.plan(name, lines + (["~ termination protection on"] if protection_change else []))
            if reporter.check:
                stacks.delete_change_set(name, change_set)
                reporter.changed(name, f"would update {len(changes)} resource(s)")
                return Outcome.CHANGED
            try:
                if confirm_question:
                    reporter.confirm(confirm_question)
            except NotConfirmed:
                stacks.delete_change_set(name, change_set)
                raise
            after = stacks.get_latest_event_id(name)
            stacks.execute_change_set(name, change_set)
            with reporter.progress(f"updating stack {name}"):
                final, events = stacks.wait_for_stack(name, timeout=timeout, poll=poll, after_event_id=after,
                                                      on_event=stack_events_printer(reporter))
            stacks.check_settled(final, events, {"UPDATE_COMPLETE"}, "update")

    if protection_change:
        if not changes:
            reporter.plan(name, ["~ termination protection on"])
            if reporter.check:
                reporter.changed(name, "would turn termination protection on")
                return Outcome.CHANGED
        on_act()
        stacks.set_termination_protection(name, True)
    reporter.changed(name, "termination protection turned on" if protection_change and not changes else "stack updated")
    return Outcome.CHANGED


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


def _once(action: Callable[[], None] | None) -> Callable[[], None]:
    done = []

    def call() -> None:
        if action is not None and not done:
            done.append(True)
            action()

    return call


def _is_unchanged(stacks: Stacks, stack: StackInfo, template: Template, parameters: Mapping[str, str],
                  tags: Mapping[str, str]) -> bool:
    # DescribeStacks lists every parameter, defaults included; NoEcho ones read back as '****'.
    effective = {}
    for name, spec in template.parameters.items():
        if name in parameters:
            effective[name] = parameters[name]
        elif "Default" in spec:
            default = spec["Default"]
            effective[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        if spec.get("NoEcho") in (True, "true", "True"):
            return False
    if {k: _list_value(v) for k, v in stack.parameters.items()} != effective:
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


def _delete(stacks: Stacks, reporter: Reporter, stack: StackInfo, *, timeout: float, poll: float) -> None:
    after = stacks.get_latest_event_id(stack.name)
    stacks.delete_stack(stack.name)
    with reporter.progress(f"deleting stack {stack.name}"):
        final, events = stacks.wait_for_stack(stack.name, stack_id=stack.stack_id, timeout=timeout, poll=poll,
                                              after_event_id=after, on_event=stack_events_printer(reporter))
    stacks.check_settled(final, events, {"DELETE_COMPLETE"}, "delete")


def delete_stack(stacks: Stacks, reporter: Reporter, stack: StackInfo, *, timeout: float, poll: float) -> None:
    if stack.termination_protection:
        stacks.set_termination_protection(stack.name, False)
    _delete(stacks, reporter, stack, timeout=timeout, poll=poll)
