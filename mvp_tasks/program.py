"""The `inv` program: Invoke's, made strict about what was typed.

Invoke's parser is generous where a deploy tool must not be:
- a core flag after a task name (`inv app.deploy x -c prod`) is taken as Invoke's own option
  (`-c` is `--collection`), which by then has no effect: the flag is swallowed and the task runs
  with its defaults. Here only `--help`/`-h` may follow a task name; anything else is refused;
- core options for Invoke's command runner (`--dry`, `--echo`, `--pty`, ...) do nothing here (no
  task runs commands through `ctx.run`): they are left out of `inv --help` and refused when given;
- `-f missing.yaml` is skipped without a word, `-f folder` and a YAML error are tracebacks;
- outside the repository it says "Can't find any collection named 'tasks'!";
- every positional argument is required; here a positional declared `=None` may be left out
  (`inv app.promote [NAME] --tag prod`).

`MvpProgram` fixes these once, for every task, by subclassing only (`MvpParser`,
`MvpParserContext`, `MvpConfig`, `MvpLoader`); nothing of Invoke's is changed. It is the program
behind the `inv` and `mvp` scripts this package installs. Importing this module must stay cheap
(no boto3, no rich).
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
from invoke.parser import Argument, ParseResult, Parser, ParserContext
from invoke.parser.context import to_flag

CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".py")

# Invoke's core options that do nothing in this program, with why and what to do instead. Most
# configure Invoke's command runner (`ctx.run`), which no task here uses (commands go through
# mvp_tasks/image/runner.py). They stay known to the parser (Program.update_config reads them) but
# are not shown by `inv --help` and are refused, before anything runs, when given.
UNUSED_CORE_OPTIONS = {
    "dry": "to see what a task would change without changing anything, give it --check "
           "(e.g. `inv app.update NAME --check`)",
    "echo": "tasks do not run commands through Invoke's runner; leave it out",
    "hide": "tasks do not run commands through Invoke's runner; leave it out",
    "pty": "tasks do not run commands through Invoke's runner; leave it out",
    "warn-only": "tasks do not run commands through Invoke's runner, and a failure always fails; leave it out",
    "command-timeout": "tasks do not run commands through Invoke's runner; for AWS waits set mvp.wait_timeout",
    "prompt-for-sudo-password": "no task runs sudo; leave it out",
    "write-pyc": "it only makes Python write bytecode caches; leave it out",
}

# An unknown flag of a task that has a flag for the same purpose under another name.
FLAG_HINTS = {
    ("app.promote", "--cluster"): "app.promote takes --tag CLUSTER_TAG, the cluster to promote to "
                                  "(and --from for the source)",
    ("app.promote", "--to"): "app.promote takes --tag CLUSTER_TAG, the cluster to promote to "
                             "(and --from for the source)",
    ("ci.release", "--tag"): "ci.release takes --cluster NAME, the cluster to release to",
}


class MvpParserContext(ParserContext):
    """A task's parser context whose optional positionals (`optional`, argument names) may be left
    out: they are not in `positional_args`, so Invoke's parser neither waits for nor requires them,
    and `MvpParser` turns a bare word meant for one into its flag (`cluster.up stage` ->
    `cluster.up --name=stage`)."""

    def __init__(self, name: str | None = None, aliases: Iterable[str] = (), args: Iterable[Argument] = (),
                 optional: Iterable[str] = ()) -> None:
        super().__init__(name=name, aliases=aliases, args=args)
        optional = set(optional)
        self.optional_positionals = [a for a in self.positional_args if a.names[0] in optional]
        self.positional_args = [a for a in self.positional_args if a.names[0] not in optional]


class MvpParser(Parser):
    """Invoke's parser, strict about flags after a task name, with optional positionals.

    One pass over the tokens before Invoke's own, with the same precedence as Invoke's parse
    machine (a task's flag, then a flag's value, then a positional, then a task name):
    - a dash token after a task that is neither its flag, nor a flag's value, nor `--help`/`-h` is
      refused, before Invoke could take it as a core option or as the task's NAME;
    - a bare word meant for an optional positional becomes that flag with the word as its value;
      a word for a required positional is left to Invoke;
    - a positional given twice (as a word and as its flag) is refused: nothing typed is ignored.
    """

    def parse_argv(self, argv: list[str]) -> Any:
        return super().parse_argv(self.with_optional_positionals(argv))

    def with_optional_positionals(self, argv: list[str]) -> list[str]:
        out: list[str] = []
        context: Any = None
        given: dict[str, str] = {}  # argument name -> how it was given
        waiting = False  # the previous token was a flag that takes a value
        for index, token in enumerate(argv):
            if token == "--":
                return out + argv[index:]
            if context is not None and token.startswith("-") and len(token) > 1:
                flag = token.split("=", 1)[0]
                inverse = flag in context.inverse_flags
                name = context.inverse_flags[flag] if inverse else flag
                argument = context.flags[name] if name in context.flags else None
                if argument is not None:
                    self._note(context, given, argument)
                    waiting = argument.takes_value and "=" not in token and not inverse
                    out.append(token)
                    continue
                if waiting:  # `--parallel -3`: a value, for the task to judge
                    waiting = False
                    out.append(token)
                    continue
                if self.initial is not None and flag in self.initial.flags:  # --help, -h
                    out.append(token)
                    continue
                raise ParseError(f"No idea what {flag!r} is!", context)
            if waiting:
                waiting = False
                out.append(token)
                continue
            if context is not None:
                wanted = next((a for a in context.positional_args if a.name not in given), None)
                if wanted is not None:
                    given[wanted.name] = repr(token)
                    out.append(token)
                    continue
                optional = next((a for a in context.optional_positionals if a.name not in given), None)
                if optional is not None:
                    given[optional.name] = repr(token)
                    out.append(f"{to_flag(optional.names[0])}={token}")
                    continue
            if token in self.contexts:
                context, given = self.contexts[token], {}
            out.append(token)
        return out

    @staticmethod
    def _note(context: Any, given: dict[str, str], argument: Argument) -> None:
        positionals = context.positional_args + context.optional_positionals
        if not any(argument is a for a in positionals):
            return
        flag = to_flag(argument.names[0])
        if argument.name in given:
            raise ParseError(f"{argument.names[0].upper()} was given twice ({given[argument.name]} and {flag}); "
                             "give it once", context)
        given[argument.name] = flag


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
    # The parser of the tasks' flags is made the first time something reads it: `inv --list`,
    # `inv --version` and `inv --help TASK` have no task token to parse, and reading every task's
    # arguments into contexts (then Invoke's deep copy of them) would be a sixth of their time.
    _parser: Parser | None = None

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("config_class", MvpConfig)
        kwargs.setdefault("loader_class", MvpLoader)
        kwargs.setdefault("binary_names", ["inv", "mvp"])
        super().__init__(**kwargs)

    @property
    def parser(self) -> Parser:
        if self._parser is None:
            self._parser = self._make_parser()
        return self._parser

    @parser.setter
    def parser(self, value: Parser) -> None:
        self._parser = value

    def print_version(self) -> None:
        # Read from the installed package only when asked: importlib.metadata would cost every
        # `inv` about 15 ms (it imports email, zipfile and scans site-packages).
        if self.version == "unknown":
            from importlib.metadata import PackageNotFoundError, version

            try:
                self.version = version("mvp-tasks")
            except PackageNotFoundError:  # pragma: no cover - run from a checkout without an install
                pass
        super().print_version()

    def run(self, argv: Any = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except BrokenPipeError:
            _quiet_stdout()
            sys.exit(0)

    # --- parsing ----------------------------------------------------------------------------

    def parse_core_args(self) -> None:
        try:
            super().parse_core_args()
        except ValueError as exc:  # `-D abc`: Invoke casts core values to int as it parses them
            raise Exit(f"error: a core option was given a value it cannot take ({exc}); "
                       "see `inv --help`") from None
        for name, instead in UNUSED_CORE_OPTIONS.items():
            argument = self.core[0].args[name]
            if argument.got_value:
                shown = " ".join([to_flag(argument.names[0])] + [f"({to_flag(n)})" for n in argument.nicknames])
                raise Exit(f"error: {shown} is an Invoke option that does nothing in this program: {instead}")

    def parse_core(self, argv: Any) -> None:
        super().parse_core(argv)
        import logging

        if logging.getLogger().isEnabledFor(logging.DEBUG):  # -d/--debug or INVOKE_DEBUG
            # botocore logs whole request bodies at DEBUG (an SSM PutParameter's secret value
            # included); no secret may reach any output, debug output included.
            for name in ("botocore", "boto3", "urllib3", "s3transfer"):
                logging.getLogger(name).setLevel(logging.INFO)

    def _make_parser(self) -> Parser:
        # After a task name only --help/-h of the core flags is understood: Invoke would otherwise take
        # `-c prod` (core --collection) or `-f x.yaml` as its own option, after it could matter.
        helps = [arg for arg in self.core_args() if "help" in arg.names]
        return MvpParser(initial=ParserContext(args=helps), contexts=self._task_contexts())

    def _task_contexts(self) -> list[MvpParserContext]:
        """Collection.to_contexts, with contexts that know their task's optional positionals."""
        ignore = self.config.tasks.ignore_unknown_help
        contexts = []
        for name, aliases in self.collection.task_names.items():
            task = self.collection[name]
            contexts.append(MvpParserContext(
                name=name, aliases=aliases, args=task.get_arguments(ignore_unknown_help=ignore),
                optional=getattr(task, "optional_positionals", ())))
        return contexts

    def parse_tasks(self) -> None:
        tokens = self.core.unparsed
        for index, token in enumerate(tokens):
            # `inv app.deploy --help`: Invoke would take `--help` as the missing NAME.
            if token in ("--help", "-h"):
                task = next((t for t in reversed(tokens[:index]) if t in self.collection.task_names), None)
                if task:
                    self.print_task_help(task)
                    raise Exit
        if not tokens:  # nothing to parse: what Invoke's parser returns for no tokens, without making it
            self.tasks = ParseResult()
            return
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise Exit(f"error: {self._explain(exc)}") from None

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
        hint = FLAG_HINTS.get((context.name, flag))
        if hint is None and flag in ("--dry", "-R") and "--check" in context.flags:
            hint = f"to see what {context.name} would change without changing anything, give it --check"
        if hint:
            return f"{flag} is not a flag of {context.name}: {hint}; {help_hint}"
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

    # --- help, --list and completion ---------------------------------------------------------

    def shown_core_context(self) -> ParserContext:
        """The core options that work here: what `inv --help` lists and `inv --<TAB>` completes."""
        args = self.core_args() + (self.task_args() if self.namespace is None else [])
        return ParserContext(args=[a for a in args if a.names[0] not in UNUSED_CORE_OPTIONS])

    def print_help(self) -> None:
        print(f"Usage: {self.binary} [--core-opts] task1 [--task1-opts] ... taskN [--taskN-opts]")
        print("")
        print("Core options:")
        print("")
        self.print_columns(self.shown_core_context().help_tuples())

    def display_with_columns(self, pairs: Any, extra: str = "") -> None:
        """`inv --list`: one line per task, its description a whole sentence (Invoke wraps it over
        several lines); on a terminal too narrow for it, shortened at a word and marked with `…`."""
        print(f"{self.task_list_opener(extra=extra)}:\n")
        sentences = _first_sentences(self.scoped_collection)
        pairs = [(name, sentences.get(text, text)) for name, text in pairs]
        name_width = max((len(name) for name, _ in pairs), default=0)
        room = None
        if sys.stdout.isatty():
            from invoke.terminals import pty_size

            room = pty_size()[0] - name_width - self.leading_indent_width - self.col_padding - 1
        for name, text in pairs:
            line = f"{self.leading_indent}{name.ljust(name_width)}{' ' * self.col_padding}{fit_sentence(text or '', room)}"
            print(line.rstrip())
        print("")
        default = self.scoped_collection.default
        if default:
            root = self.list_root
            print(f"Default '{root}' task: .{default}\n" if root else f"Default task: {default}\n")

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
        optional = getattr(context, "optional_positionals", [])
        positionals = " ".join([a.name.upper() for a in context.positional_args]
                               + [f"[{a.name.upper()}]" for a in optional])
        usage = " ".join(part for part in (f"inv {name}", positionals, "[--options]" if context.flags else "") if part)
        print(f"Usage: {usage}")
        print("")
        doc = self.collection[name].__doc__ or ""
        for line in doc.strip().splitlines() or ["(no description)"]:
            print(self.leading_indent + line.strip())
        print("")
        if context.positional_args or optional:
            print("Arguments:")
            self.print_columns([
                (a.name.upper(), f"or {to_flag(a.names[0])}; " + (context.help_for(to_flag(a.names[0]))[1] or ""))
                for a in context.positional_args + optional
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
            invoke_complete(names=self.binary_names, core=self.core, initial_context=self.shown_core_context(),
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


def _first_sentences(collection: Any) -> dict[str, str]:
    """Invoke's help line of each task (its docstring's first line) -> its docstring's first sentence,
    so a description that goes on to a second line is not shown cut where the line ends."""
    import re

    from invoke.util import helpline

    sentences: dict[str, str] = {}
    for task in collection.tasks.values():
        line = helpline(task)
        if line:
            paragraph = " ".join(task.__doc__.strip().split("\n\n", 1)[0].split())
            first = re.match(r"(.+?[.!?])(?=\s+[A-Z(`]|$)", paragraph)
            sentences[line] = first.group(1) if first else paragraph
    for sub in collection.collections.values():
        sentences.update(_first_sentences(sub))
    return sentences


def fit_sentence(text: str, width: int | None) -> str:
    """`text` whole when it fits in `width` (or no width is given), else cut at a word with `…`."""
    text = " ".join(text.split())
    if width is None or len(text) <= width:
        return text
    width = max(width, 20)  # a terminal narrower than that is unreadable anyway
    cut = text[:width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:(-") + "…"


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


def main() -> None:
    MvpProgram(name="mvp-studio deploy tooling").run()  # its version is read by --version alone
