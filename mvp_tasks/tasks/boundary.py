"""The task boundary: one decorator that turns expected errors into one line and an exit code,
and the per-run objects (settings, reporter, AWS clients) every task starts from.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
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


@dataclass
class Run:
    """What one task invocation works with."""

    settings: Any  # settings.Settings
    reporter: Any  # report.Reporter
    _clients: Any = field(default=None, repr=False)

    @property
    def aws(self):
        if self._clients is None:
            from ..aws.clients import AwsClients

            self._clients = AwsClients(get_aws_target(self.settings))
        return self._clients

    def finish(self) -> None:
        recap = self.reporter.finish()
        if recap.failed:
            raise Exit(code=1)


def start(ctx: Any, title: str, *, check: bool = False, yes: bool = False, json_output: bool = False,
          aws: bool = True) -> Run:
    from ..report import Reporter

    settings = get_settings(ctx)
    if aws:
        from ..templates import check_cluster_parameters

        check_cluster_parameters(settings)
    reporter = Reporter(check=bool(check), yes=bool(yes), json_output=json_output)
    run = Run(settings, reporter)
    if aws:
        target = run.aws.target
        reporter.header(f"{title}  [{target.describe()}]" + ("  (check mode)" if check else ""))
    else:
        reporter.header(title + ("  (check mode)" if check else ""))
    return run


def get_aws_target(settings: Any):
    """Where AWS calls go: AWS_ENDPOINT_URL if set, else the local sandbox if it is up, else AWS."""
    from ..aws.clients import AwsTarget
    from ..sandbox import get_moto_endpoint

    region = settings.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint:
        return AwsTarget(region=region or "us-east-1", profile=settings.profile, endpoint_url=endpoint)
    sandbox = get_moto_endpoint(settings.sandbox_dir)
    if sandbox:
        return AwsTarget(region=region or "us-east-1", endpoint_url=sandbox, sandbox=True)
    return AwsTarget(region=region, profile=settings.profile)


def require(value: Any, flag: str, example: str) -> Any:
    if value in (None, ""):
        raise UsageError(f"{flag} is required, e.g. {example}")
    return value


def stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


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
