"""The `inv` program: Invoke's, made strict about what was typed.

Invoke's parser is generous where a deploy tool must not be:
- a core flag after a task name (`inv app.deploy x -c prod`) is taken as Invoke's own option
  (`-c` is `--collection`), which by then has no effect: the flag is swallowed and the task runs
  with its defaults. Here only `--help`/`-h` may follow a task name; anything else is refused;
- `-f missing.yaml` is skipped without a word, `-f folder` and a YAML error are tracebacks;
- outside the repository it says "Can't find any collection named 'tasks'!".

`MvpProgram` fixes these once, for every task. It is the program behind the `inv` and `mvp`
scripts this package installs; an `inv` of another install that loads our tasks.py is switched to
it as well (`adopt_running_program`). Importing this module must stay cheap (no boto3, no rich).
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable

from invoke import Config, Exit, FilesystemLoader, ParseError, Program
from invoke.exceptions import CollectionNotFound
from invoke.parser import Parser, ParserContext

CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".py")


def _shown(path: Any) -> str:
    """A path as a person would type it: relative to the current folder when inside it."""
    try:
        relative = Path(path).resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return str(path)
    return str(relative) if relative.parts else str(Path(path).resolve())


class MvpConfig(Config):
    """Config files that cannot be read are one line, not a traceback."""

    def _load_file(self, prefix: str, absolute: bool = False, merge: bool = True) -> None:
        try:
            super()._load_file(prefix, absolute=absolute, merge=merge)
        except OSError as exc:  # a folder, no permission (a missing file Invoke skips itself)
            name = _shown(exc.filename) if exc.filename else f"the {prefix} config file"
            raise Exit(f"error: config file {name} cannot be read: {exc.strerror}; "
                       "give a readable .yaml, .yml or .json file") from None

    def _load_yaml(self, path: Any) -> Any:
        import yaml

        try:
            with open(path) as fd:
                data = yaml.safe_load(fd)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
            problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
            raise Exit(f"error: config file {_shown(path)}{where}: YAML syntax error: {problem}; fix that "
                       "line (indent with spaces, not tabs; quote values containing ': ' or '#')") from None
        except yaml.YAMLError as exc:
            raise Exit(f"error: config file {_shown(path)}: not YAML: {' '.join(str(exc).split())}") from None
        return self._mapping(data, path)

    _load_yml = _load_yaml

    def _load_json(self, path: Any) -> Any:
        try:
            with open(path) as fd:
                data = json.load(fd)
        except json.JSONDecodeError as exc:
            raise Exit(f"error: config file {_shown(path)}:{exc.lineno}:{exc.colno}: JSON syntax error: "
                       f"{exc.msg}; fix that line") from None
        return self._mapping(data, path)

    @staticmethod
    def _mapping(data: Any, path: Any) -> dict:
        if data is None:  # an empty file: nothing configured
            return {}
        if not isinstance(data, dict):
            raise Exit(f"error: config file {_shown(path)}: the top level must be a mapping such as "
                       f"`mvp: {{...}}`, not a {type(data).__name__}")
        return data


class MvpLoader(FilesystemLoader):
    """Finds tasks.py by walking up from the current folder, or says how to get into the repo."""

    def find(self, name: str) -> Any:
        try:
            return super().find(name)
        except CollectionNotFound:
            if name != "tasks":
                raise
            start = _shown(self.start)
            raise Exit(f"error: not inside the studio repository: no tasks.py in {start} or any folder "
                       "above it; cd into the repository (the folder with invoke.yaml and projects/), "
                       "or clone it first") from None


class MvpProgram(Program):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("config_class", MvpConfig)
        kwargs.setdefault("loader_class", MvpLoader)
        kwargs.setdefault("binary_names", ["inv", "mvp"])
        super().__init__(**kwargs)

    def run(self, argv: Any = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except BrokenPipeError:
            _quiet_stdout()
            sys.exit(0)

    # --- parsing ----------------------------------------------------------------------------

    def _make_parser(self) -> Parser:
        # After a task name only --help/-h of the core flags is understood: Invoke would otherwise take
        # `-c prod` (core --collection) or `-f x.yaml` as its own option, after it could matter.
        helps = [arg for arg in self.core_args() if "help" in arg.names]
        return Parser(
            initial=ParserContext(args=helps),
            contexts=self.collection.to_contexts(ignore_unknown_help=self.config.tasks.ignore_unknown_help),
        )

    def parse_tasks(self) -> None:
        tokens = self.core.unparsed
        for index, token in enumerate(tokens):
            # `inv app.deploy --help`: Invoke would take `--help` as the missing NAME.
            if token in ("--help", "-h"):
                task = next((t for t in reversed(tokens[:index]) if t in self.collection.task_names), None)
                if task:
                    self.parser = self._make_parser()
                    self.print_task_help(task)
                    raise Exit
        self._refuse_foreign_flags(tokens)
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(f"error: {self._explain(exc)}") from None

    def _refuse_foreign_flags(self, tokens: list[str]) -> None:
        """A dash token after a task that is not one of its flags is refused as a flag, before
        Invoke's parser could take it as the task's optional NAME (`inv app.status --echo`)."""
        contexts = {c.name: c for c in self.collection.to_contexts(
            ignore_unknown_help=self.config.tasks.ignore_unknown_help)}
        for alias_owner in list(contexts.values()):
            for alias in alias_owner.aliases:
                contexts[alias] = alias_owner
        context = None
        wants_value = False
        for token in tokens:
            if wants_value:
                wants_value = False
                continue
            if token in contexts:
                context = contexts[token]
                continue
            if token == "--":
                return
            if context is None or not token.startswith("-") or token in ("-h", "--help"):
                continue
            flag = token.split("=", 1)[0]
            argument = context.flags.get(flag) or context.inverse_flags.get(flag)
            if argument is None:
                raise Exit(f"error: {self._unknown_flag(flag, context, f'see `inv --help {context.name}`')}")
            wants_value = "=" not in token and getattr(argument, "takes_value", False) and flag not in context.inverse_flags

    def _explain(self, exc: ParseError) -> str:
        """Invoke's parse errors, each with the way out. The one place that reads their text."""
        message, context = str(exc), exc.context
        task = context.name if context is not None and context.name else ""
        help_hint = f"see `inv --help {task}`" if task else "`inv --list` shows every task"
        if message.startswith("No idea what "):
            token = message[len("No idea what "):].rsplit(" is!", 1)[0].strip("'\"")
            if token.startswith("-"):
                return self._unknown_flag(token, context, help_hint)
            if task:
                return (f"unexpected {token!r} after {task}: it is neither a task nor an argument "
                        f"{task} takes{self._suggest_value(token, context)}; {help_hint}")
            close = difflib.get_close_matches(token, self.collection.task_names, n=3, cutoff=0.5)
            maybe = f" (did you mean {' or '.join(close)}?)" if close else ""
            return f"no task named {token!r}{maybe}; `inv --list` shows every task"
        if "did not receive required positional arguments" in message:
            names = " ".join(a.name.upper() for a in context.missing_positional_args) if context else "NAME"
            return f"{task} needs {names}, e.g. `inv {task} {names}`; {help_hint}"
        if message.startswith("Flag ") and "needed value" in message:
            # Invoke 2.2: "Flag <Argument: cluster> needed value and was not given one!"
            import re

            named = re.search(r"Argument: ([\w-]+)", message) or re.search(r"'([^']+)'", message)
            flag = named.group(1) if named else "a flag"
            flag = flag if flag.startswith("-") else ("--" if len(flag) > 1 else "-") + flag.replace("_", "-")
            return f"{flag} of {task} needs a value, e.g. {flag}=VALUE; {help_hint}"
        return f"{message.rstrip('!.')}; {help_hint}"

    def _unknown_flag(self, token: str, context: Any, help_hint: str) -> str:
        if context is None or not context.name:
            return f"unknown option {token}; Invoke's own options are listed by `inv --help`"
        flag = token.split("=", 1)[0]
        long_flags = [f for f in context.flags if f.startswith("--")]
        if flag.startswith("--"):
            close = difflib.get_close_matches(flag, long_flags, n=2, cutoff=0.6)
        else:
            # A short flag: this tool's tasks have long flags only (`-c` here would be Invoke's own
            # --collection, which has no effect after a task name).
            close = [f for f in long_flags if f[2:3] == flag[1:2] and not f.startswith("--no-")]
        maybe = f" (did you mean {' or '.join(close)}?)" if close else ""
        kind = "short flags" if not flag.startswith("--") else "flag"
        if kind == "short flags":
            return (f"{flag} is not a flag of {context.name}{maybe}: tasks take long flags only, and Invoke's "
                    f"own options go before the task name; {help_hint}")
        return f"{flag} is not a flag of {context.name}{maybe}; {help_hint}"

    def _suggest_value(self, token: str, context: Any) -> str:
        names = self._names()
        if "--cluster" in context.flags and token in names["cluster"]:
            return f" (did you mean --cluster {token}?)"
        return ""

    # --- configuration files given with -f --------------------------------------------------

    def parse_collection(self) -> None:
        # Before anything runs (--list, --help included): a -f file that is not there is an error.
        path = self.args.config.value
        source = "-f"
        if path is None and os.environ.get("INVOKE_RUNTIME_CONFIG"):
            path, source = os.environ["INVOKE_RUNTIME_CONFIG"], "INVOKE_RUNTIME_CONFIG"
        if path is not None:
            check_config_file(path, source)
            reader = {".json": self.config._load_json}.get(Path(path).suffix, self.config._load_yaml)
            if Path(path).suffix != ".py":
                reader(os.path.expanduser(path))  # a syntax error is one line now, not after --list
        super().parse_collection()

    # --- help and completion ----------------------------------------------------------------

    def print_task_help(self, name: str) -> None:
        try:
            self._print_task_help(name)
        except BrokenPipeError:
            _quiet_stdout()
            raise Exit from None

    def list_tasks(self) -> None:
        try:
            super().list_tasks()
        except BrokenPipeError:
            _quiet_stdout()
            raise Exit from None

    def _print_task_help(self, name: str) -> None:
        context = self.parser.contexts[name]
        positionals = " ".join(
            f"[{a.name.upper()}]" if getattr(a, "mvp_optional", False) or a.default is not None
            else a.name.upper()
            for a in context.positional_args
        )
        usage = " ".join(part for part in (f"inv {name}", positionals, "[--options]" if context.flags else "") if part)
        print(f"Usage: {usage}")
        print("")
        doc = self.collection[name].__doc__ or ""
        for line in doc.strip().splitlines() or ["(no description)"]:
            print(self.leading_indent + line.strip())
        print("")
        if context.positional_args:
            print("Arguments:")
            self.print_columns([
                (a.name.upper(), f"or --{a.name.replace('_', '-')}; " + (context.help_for(f"--{a.name.replace('_', '-')}")[1] or ""))
                for a in context.positional_args
            ])
        print("Options:")
        tuples = context.help_tuples()
        if tuples:
            self.print_columns(tuples)
        else:
            print(self.leading_indent + "none")
            print("")

    def parse_cleanup(self) -> None:
        if self.args.complete.value:
            self.complete()
        super().parse_cleanup()

    def complete(self) -> None:
        """`inv --complete -- inv TOKENS`: task names, flags, and project/cluster names where wanted."""
        from invoke.completion.complete import complete as invoke_complete

        invocation = self.core.remainder
        for binary in self.binary_names:
            if invocation.startswith(binary + " "):
                invocation = invocation[len(binary) + 1:]
                break
        try:
            tokens = shlex.split(invocation)
        except ValueError:
            tokens = invocation.split()
        if tokens and tokens[-1].startswith("-"):
            for word in self._wanted_names(tokens):  # `--cluster <TAB>`
                print(word)
            invoke_complete(names=self.binary_names, core=self.core, initial_context=self.initial_context,
                            collection=self.collection, parser=self._make_parser())
        # The shell filters by the word being typed, which may or may not be the last token.
        words: set[str] = set(self.collection.task_names)
        for head in (tokens, tokens[:-1]):
            words |= set(self._wanted_names(head))
        for word in sorted(words):
            print(word)
        raise Exit

    def _wanted_names(self, tokens: list[str]) -> Iterable[str]:
        """The names the next word could be, given the words before it."""
        task = next((t for t in reversed(tokens) if t in self.collection.task_names), None)
        if task is None:
            return []
        after = tokens[len(tokens) - 1 - tokens[::-1].index(task) + 1:]
        names = self._names()
        if after and after[-1].startswith("--") and "=" not in after[-1]:
            flag = after[-1][2:]
            return names.get({"cluster": "cluster", "from": "cluster", "tag": "tag", "name": _name_kind(task),
                              "only": "project"}.get(flag, ""), [])
        return names.get(_name_kind(task), [])

    def _names(self) -> dict[str, list[str]]:
        mvp = self.config.get("mvp", {}) or {}
        clusters = sorted((mvp.get("clusters") or {}).keys())
        projects = set((mvp.get("projects") or {}).keys())
        root = Path(getattr(self.config, "_project_prefix", None) or ".")
        if (root / "projects").is_dir():
            projects |= {p.name for p in (root / "projects").iterdir() if p.is_dir()}
        tags = sorted({(c or {}).get("tag") or name for name, c in (mvp.get("clusters") or {}).items()})
        return {"cluster": clusters, "project": sorted(projects), "tag": tags}


def _quiet_stdout() -> None:
    """`inv --help TASK | head`: the reader has gone; no flush error at exit either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _name_kind(task: str) -> str:
    return "cluster" if task.startswith("cluster.") else "project"


def check_config_file(path: str, source: str) -> None:
    """A config file named with -f must exist, be a file, and be of a kind Invoke reads."""
    where = Path(os.path.expanduser(path))
    if not where.exists():
        raise Exit(f"error: config file {path} ({source}) does not exist (looked in {Path.cwd()}); check the path")
    if where.is_dir():
        raise Exit(f"error: config file {path} ({source}) is a folder; give a .yaml, .yml or .json file")
    if where.suffix not in CONFIG_SUFFIXES:
        raise Exit(f"error: config file {path} ({source}) is not .yaml, .yml or .json; rename it or give another")


def adopt_running_program() -> None:
    """Make a plain Invoke `Program` that is loading our tasks.py behave as `MvpProgram`.

    Another install's `inv` (or `python -m invoke`) imports tasks.py from inside
    `Program.load_collection`; switching that instance's class (and its config's) there means the
    rest of its run, project config included, gets the same strict parsing as our own `inv`.
    """
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if type(candidate) is Program:
            candidate.__class__ = MvpProgram
            if type(getattr(candidate, "config", None)) is Config:
                candidate.config.__class__ = MvpConfig
            return
        frame = frame.f_back


def main() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("mvp-tasks")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout without an install
        ours = "unknown"
    MvpProgram(name="mvp-studio deploy tooling", version=ours).run()
