"""The task boundary: the one decorator that turns expected errors into one line and an exit code,
`start` (the run's one `World`), and `run_plan`: flags -> world -> plan -> show -> confirm once ->
engine -> results -> summary, error lines and exit code, the same for every task that changes
something. Nothing below `tasks/` knows Invoke's command line; everything that does is here.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from invoke import Exit, Task, task
from invoke.parser.context import translate_underscores

from ..errors import MvpError, UsageError


def mvp_task(*args: Any, **kwargs: Any) -> Callable:
    """`@invoke.task`, plus: `MvpError`s and botocore errors become one line on stderr and exit 1."""

    def decorate(body: Callable) -> Any:
        import inspect

        signature = inspect.signature(body)
        positional = set(kwargs.get("positional") or ())
        module = body.__module__.rsplit(".", 1)[-1]
        # app.secret.* live in their own module (secret.py) under the app collection.
        task_name = f"{'app.secret' if module == 'secret' else module}.{kwargs.get('name') or body.__name__}"

        @functools.wraps(body)
        def wrapper(*a: Any, **kw: Any) -> Any:
            try:
                refuse_empty_names(signature, positional, a, kw, task_name)
                check_parallel(signature, a, kw)
                return body(*a, **kw)
            except Exit:
                raise
            except MvpError as exc:
                raise Exit(f"error: {exc}", code=exc.exit_code) from None
            except BrokenPipeError:
                # Output piped into `head` and the like: the reader has gone; nothing to say.
                sys.stderr = open(os.devnull, "w")
                raise Exit(code=0) from None
            except KeyboardInterrupt:
                raise Exit("interrupted: AWS may still be working; check with a status task", code=130) from None
            except Exception as exc:
                from ..aws.clients import translate

                mapped = translate(exc)
                if mapped is None:
                    raise
                raise Exit(f"error: {mapped}", code=1) from None

        # Long flags only: `-h` meaning --check (Invoke's automatic short flag) would surprise.
        kwargs.setdefault("auto_shortflags", False)
        # A positional whose default is None may be left out (`inv cluster.up [NAME]`): MvpTask.
        kwargs.setdefault("klass", MvpTask)
        return task(*args, **kwargs)(wrapper)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        body, args = args[0], ()
        return decorate(body)
    return decorate


def refuse_empty_names(signature: Any, positional: set, args: tuple, kwargs: dict, task_name: str) -> None:
    """`--cluster ''` or `app.deploy ""` (an unset shell variable, most often) is refused: an empty
    name must never quietly mean the default. Applies to every argument that names something: the
    required positionals and the options whose default is None."""
    import inspect

    bound = signature.bind_partial(*args, **kwargs)
    for name, value in bound.arguments.items():
        parameter = signature.parameters[name]
        if name == "ctx" or not isinstance(value, str) or value.strip():
            continue
        if parameter.default is None or parameter.default is inspect.Parameter.empty:
            flag = name.rstrip("_").replace("_", "-")
            if parameter.default is inspect.Parameter.empty:
                raise UsageError(f"{flag.upper()}: the value is empty; give one (see `inv --help {task_name}`)")
            shown = f"{flag.upper()}/--{flag}" if name in positional else f"--{flag}"
            raise UsageError(f"{shown}: the value is empty; give one, or leave the option out (see `inv --help {task_name}`)")


MAX_PARALLEL = 64


def check_parallel(signature: Any, args: tuple, kwargs: dict) -> None:
    """`--parallel N` of every fleet task: a whole number from 1 to 64, checked before anything runs."""
    value = signature.bind_partial(*args, **kwargs).arguments.get("parallel")
    if value is None:
        return
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PARALLEL:
        raise UsageError(f"--parallel {value!r}: give a whole number from 1 to {MAX_PARALLEL}",
                         "or leave it out for mvp.parallel")


def project_root(ctx: Any) -> Path:
    """The folder holding tasks.py and invoke.yaml (Invoke finds it by walking up from the cwd)."""
    prefix = getattr(ctx.config, "_project_prefix", None)
    return Path(prefix) if prefix else Path.cwd()


def get_settings(ctx: Any):
    from ..settings import load_settings

    return load_settings(ctx.config, project_root(ctx))


def start(ctx: Any, title: str, *, check: bool = False, yes: bool = False, json_output: bool = False,
          aws: bool = True):
    """The run's one `World`: settings validated, a reporter, and AWS clients made when first used.
    `aws`: the task talks to AWS (its cluster parameters are checked and its header names where)."""
    from ..report import Reporter
    from ..world import World

    settings = get_settings(ctx)
    if aws:
        from ..templates import check_cluster_parameters

        check_cluster_parameters(settings)
    reporter = Reporter(check=bool(check), yes=bool(yes), json_output=json_output)
    world = World(settings, reporter)
    world.rollback_on_stop = bool(yes)  # with mvp.rollback_on_interrupt: see World.rolls_back
    where = f"  [{world.aws.target.describe()}]" if aws else ""
    reporter.header(f"{title}{where}" + ("  (check mode)" if check else ""))
    return world


def require(value: Any, flag: str, example: str) -> Any:
    if value in (None, ""):
        raise UsageError(f"{flag} is required, e.g. {example}")
    return value


def project_from_cwd(root: Path) -> str:
    """The project whose folder (projects/NAME/ or below) the shell is in; "" elsewhere."""
    try:
        parts = Path.cwd().resolve().relative_to(root.resolve()).parts
    except ValueError:
        return ""
    return parts[1] if len(parts) >= 2 and parts[0] == "projects" else ""


def project_name(world: Any, name: str | None, task: str) -> str:
    """NAME as given, else the project whose folder the shell is in; refused when neither. Not
    checked against the config here: each task looks it up as it must."""
    name = name or project_from_cwd(world.settings.root)
    if not name:
        raise UsageError(f"{task} needs NAME, e.g. `inv {task} museum-adventure`, or run it inside projects/NAME/; "
                         f"see `inv --help {task}`")
    return name


def target_stub(project: str = "", cluster: str = "", *, kind: str = "", key: str = "", **kw: Any):
    """The placeholder of a target while it is planned: an app in a cluster (a project given), else
    a cluster; `kind` and `key` (an app's `project@cluster`, a cluster's name) unless given."""
    from ..plan.planner import app_key, cluster_key
    from ..plan.steps import TargetPlan

    kind = kind or ("app" if project else "cluster")
    key = key or (app_key(project, cluster) if project else cluster_key(cluster))
    return TargetPlan(key, kind=kind, project=project, cluster=cluster, **kw)


# --- the pipeline: plan, show, confirm once, apply, results -------------------------------------


def run_plan(world: Any, title: str, planners: list, *, confirm: str = "", parallel: int | None = None,
             host: str | None = None) -> None:
    """The one pipeline of every task that changes something: plan every target side by side, show
    the plan, ask once (unless --check), apply it, and end with the summary and the exit code.

    The first Ctrl-C or SIGTERM sets `world.stop` (at the prompt it is a "no"); the engine then
    starts nothing new and undoes what is half-done. A second one exits at once."""
    from ..apply.executor import Engine
    from ..errors import Interrupted
    from ..interrupts import handle_interrupts
    from ..report import Results

    first, again = _interrupt_handlers(world)
    with handle_interrupts(first, again):
        with Engine(world, parallel=parallel, host=host) as engine:
            try:
                results = carry_out(engine, engine.plan(title, planners, confirm=confirm))
            except Interrupted as exc:
                world.reporter.warn(str(exc))
                results = Results(interrupted=True)
        if results.offers:
            # Within the run's handlers until the offer installs its own: Ctrl-C again in between
            # exits at once, as the first one said it would.
            offer_rollbacks(world, results, parallel=parallel)
    finish(world, results)


def _interrupt_handlers(world: Any) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """The first interrupt: `world.stop` (at the prompt, a "no"); a second one: exit at once."""
    from ..interrupts import exit_at_once

    reporter = world.reporter

    def first(signal_name: str) -> None:
        by = "Ctrl-C" if signal_name == "SIGINT" else signal_name
        world.interrupt(by)
        if reporter.asking:
            # At the prompt nothing was applied: abort the question (a "no"); the change sets
            # planning made are deleted on the way out.
            raise KeyboardInterrupt
        # Said from a thread of its own: this handler runs between any two bytecodes of the main
        # thread, which may be inside a write to the same stream.
        threading.Thread(target=reporter.warn, daemon=True, args=(
            ("interrupted" if by == "Ctrl-C" else f"interrupted by {by}") + ": nothing new starts; the targets "
            "in flight undo what they left half-done (Ctrl-C again to exit at once)",)).start()

    def again(signal_name: str) -> None:
        os.write(2, b"interrupted again: exiting at once; AWS may still be working "
                    b"(check with `inv app.status`)\n")
        exit_at_once()

    return first, again


def offer_rollbacks(world: Any, results: Any, *, parallel: int | None = None) -> None:
    """Rollouts the run stopped half-way (Ctrl-C, SIGTERM, the wait timeout) and did not roll back
    (no --yes, no `mvp.rollback_on_interrupt`): on a terminal, their rollback is offered as a plan
    of its own, asked once, applied by the engine under each app's lock, and told in `results`;
    without a terminal, each is named with the way to have it rolled back."""
    import functools

    from ..apply.executor import Engine
    from ..errors import Interrupted, NotConfirmed
    from ..interrupts import handle_interrupts
    from ..plan.planner import plan_rollback_offer

    reporter = world.reporter
    offers = results.offers
    # No question without a person to answer it: no terminal, --json (its stdout is data), or a
    # SIGTERM, which asks the process to end now (a SIGKILL follows it), not to wait at a prompt.
    if not reporter.interactive or reporter.check or reporter.json_output or world.stopped_by == "SIGTERM":
        for offer in offers:
            reporter.warn(f"{offer.project}@{offer.cluster}: deployment {offer.deployment_id} of service "
                          f"{offer.service} goes on in ECS; a run with --yes or mvp.rollback_on_interrupt: true "
                          "rolls such a rollout back when it is stopped")
        return
    world.resume()
    planners = [(target_stub(o.project, o.cluster), functools.partial(plan_rollback_offer, offer=o)) for o in offers]
    first, again = _interrupt_handlers(world)
    with handle_interrupts(first, again), Engine(world, parallel=parallel) as engine:
        try:
            more = carry_out(engine, engine.plan(
                "roll back", planners, confirm=f"roll back {len(offers)} rollout(s) stopped half-way"))
        except (Interrupted, NotConfirmed) as exc:
            reporter.warn(f"{exc}; the rollout(s) go on in ECS")
            return
        except MvpError as exc:  # planning it failed (AWS unreachable): the run's own outcome stands
            reporter.warn(f"the rollback could not be planned: {exc}; the rollout(s) go on in ECS")
            return
    _merge_rollbacks(results, more)


def _merge_rollbacks(results: Any, more: Any) -> None:
    """The offered rollbacks' results, told on the targets that stopped their rollouts: one line
    per target in the recap, the outcome of the interrupted run kept."""
    from ..report import Outcome, Result

    by_key = {r.target: r for r in more.results}
    for i, first in enumerate(results.results):
        second = by_key.get(first.target)
        if first.offer is None or second is None:
            continue
        if second.outcome is Outcome.FAILED:
            told = f"then the rollback failed: {second.message}"
        else:
            # Rolled back, or found over already (completed, replaced): the stopped rollout runs no more.
            told = f"then {second.message}" if second.message else "not rolled back"
            rolled = first.offer.service
            for what in [w for w in results.still_running if w.startswith(f"service {rolled}: ")]:
                del results.still_running[what]
        results.results[i] = Result(first.target, first.outcome, f"{first.message}; {told}", first.commit,
                                    first.duration)
    results.still_running.update(more.still_running)


def carry_out(engine: Any, plan: Any):
    """Show `plan`; in check mode, report what would change; else ask once and apply it. The results."""
    from ..report import Outcome

    reporter = engine.reporter
    show(reporter, plan)
    if reporter.check:
        results = engine.settle(plan)
        for target in plan.changes:
            results.add(reporter.result(target.key, Outcome.CHANGED, target.would(), commit=target.commit))
        return results
    question = plan.question()
    if question:
        reporter.confirm(question)
    return engine.apply(plan)


def show(reporter: Any, plan: Any) -> None:
    """Each target's warnings, reasons and lines, before anything is asked or applied."""
    for target in plan.targets:
        for warning in target.warnings:
            reporter.warn(f"{target.key}: {warning}")
        if target.changes:
            if target.reasons:
                reporter.info(f"{target.key}: {'; '.join(target.reasons)}")
            reporter.plan(target.key, target.lines())


def finish(world: Any, results: Any = None, *, json_outcomes: bool = True) -> None:
    """The end of every task that reports outcomes: what keeps running in AWS, the summary, the
    recap line, `--json`, each failure once on stderr, and the exit code (130 when interrupted)."""
    reporter = world.reporter
    results = reporter.recap if results is None else results
    if results.still_running:
        reporter.warn("still running in AWS on its own:")
        for what, follow in sorted(results.still_running.items()):
            reporter.info(f"{what}; follow it with `{follow}`")
    reporter.summary(results)
    reporter.finish(results)
    if reporter.json_output and json_outcomes:
        reporter.emit_json([
            {"target": r.target, "outcome": r.outcome.value, "commit": r.commit,
             "duration": round(r.duration, 3) if r.duration is not None else None, "message": r.message}
            for r in results.results])
    failures = [f"{r.target}: {r.message}" for r in results.failures]
    if results.interrupted:
        say_errors(failures)
        keeps = "see above for what keeps running in AWS" if results.still_running else "nothing is left running"
        raise Exit(f"interrupted: {keeps}", code=130)
    if failures:
        say_errors(failures)
        raise Exit(code=1)


def say_errors(lines: list[str]) -> None:
    """Each failure once on stderr, one line each, `error: ...`: where CI and scripts look."""
    sys.stdout.flush()
    for line in lines:
        sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


# --- optional positional arguments ------------------------------------------------------------
# `inv app.promote [NAME] --tag prod`: Invoke 2.2 has positional arguments, but each is required.
# The task says which of its positionals may be left out; MvpProgram's parser (mvp_tasks/program.py)
# acts on it. Nothing of Invoke's is changed: this is a subclass, used through `task(klass=...)`.


class MvpTask(Task):
    """Invoke's Task, with its help texts kept and its optional positionals named."""

    @property
    def optional_positionals(self) -> tuple[str, ...]:
        """The argument names of the positionals declared `=None` (not those with no default)."""
        parameters = self.argspec(self.body).parameters
        return tuple(translate_underscores(name) for name in self.positional
                     if name in parameters and parameters[name].default is None)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list:
        # Invoke's get_arguments *pops* each help text it uses (Task.arg_opts), so only its first
        # call would have them; the parser, completion and `--help TASK` each build contexts.
        saved = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help=ignore_unknown_help)
        finally:
            self.help = saved
