"""mvp_tasks/program.py: our `inv` gets its strict command line by subclassing Invoke, never by
changing Invoke's classes; optional positionals; the --list description of a task."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from invoke import ParseError

from conftest import ROOT

# In a fresh interpreter: every attribute of every class and function of Invoke's modules, by
# identity, before and after importing mvp_tasks, building its parser contexts and running our
# program (help, --list, completion, a parse with an optional positional).
SNAPSHOT = r"""
import inspect, json, sys
import invoke, invoke.parser, invoke.parser.context, invoke.parser.parser, invoke.parser.argument
import invoke.program, invoke.tasks, invoke.collection, invoke.config, invoke.loader, invoke.executor
import invoke.completion.complete, invoke.util, invoke.terminals, invoke.main

def snapshot():
    seen = {}
    for module_name, module in sorted(sys.modules.items()):
        if module is None or not (module_name == "invoke" or module_name.startswith("invoke.")):
            continue
        for name, value in sorted(vars(module).items()):
            seen[f"{module_name}:{name}"] = id(value)
            if inspect.isclass(value) and (value.__module__ or "").startswith("invoke"):
                for attr, member in vars(value).items():
                    if attr == "__slotnames__":  # copyreg's cache, made by the first deepcopy
                        continue
                    seen[f"{value.__module__}.{value.__qualname__}.{attr}"] = id(member)
    return seen

before = snapshot()
import mvp_tasks
from mvp_tasks.program import MvpProgram
mvp_tasks.ns.to_contexts()
for argv in (["inv", "--help", "app.promote"], ["inv", "--list"], ["inv", "--help"],
             ["inv", "--complete", "--", "inv", "cluster.up", "stage", "--"]):
    MvpProgram().run(argv, exit=False)
after = snapshot()
changed = sorted(k for k in before if k in after and before[k] != after[k])
added = sorted(k for k in after if k not in before and ":" not in k)
print("RESULT " + json.dumps({"changed": changed, "added": added,
                              "patched_flag": hasattr(invoke.parser.ParserContext, "_mvp_patched")}))
"""


def test_importing_and_running_mvp_tasks_changes_nothing_of_invoke():
    result = subprocess.run([sys.executable, "-c", SNAPSHOT], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    report = json.loads(line[len("RESULT "):])
    assert report == {"changed": [], "added": [], "patched_flag": False}, report


def test_the_package_walks_no_stack_frames_and_swaps_no_classes():
    for path in sorted((ROOT / "mvp_tasks").rglob("*.py")):
        text = path.read_text()
        for needle in ("sys._getframe", "__class__ =", "_mvp_patched", "inspect.currentframe"):
            assert needle not in text, f"{path.relative_to(ROOT)} uses {needle}"


# --- the parser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parse():
    from mvp_tasks import ns
    from mvp_tasks.program import MvpProgram

    program = MvpProgram()
    program.collection = ns
    program.create_config()

    def parse(*argv: str) -> dict:
        contexts = program._make_parser().parse_argv(list(argv))
        return {c.name: c.as_kwargs for c in contexts}

    return parse


def test_an_optional_positional_may_be_given_as_a_word_or_left_out(parse):
    assert parse("cluster.up", "stage")["cluster.up"]["name"] == "stage"
    assert parse("cluster.up")["cluster.up"]["name"] is None
    assert parse("app.promote", "--tag", "prod", "museum-adventure")["app.promote"]["name"] == "museum-adventure"
    assert parse("app.promote", "--tag", "prod")["app.promote"]["name"] is None
    # After its NAME, a task name starts the next task.
    both = parse("cluster.status", "stage", "app.status")
    assert both["cluster.status"]["name"] == "stage" and both["app.status"]["name"] is None


def test_a_required_positional_is_still_required(parse):
    assert parse("app.deploy", "museum-adventure")["app.deploy"]["name"] == "museum-adventure"
    assert parse("app.deploy")["app.deploy"]["name"] is None  # optional: the project folder you are in
    with pytest.raises(ParseError, match="did not receive required positional arguments"):
        parse("app.secret.set", "museum-adventure")
    secret = parse("app.secret.set", "museum-adventure", "API_KEY")["app.secret.set"]
    assert (secret["name"], secret["key"]) == ("museum-adventure", "API_KEY")


@pytest.mark.parametrize("argv, message", [
    (("app.status", "x", "--name", "y"), "NAME was given twice"),
    (("app.deploy", "x", "--name", "y"), "NAME was given twice"),
    (("app.status", "--name=y", "x"), "No idea what 'x' is"),  # NAME given: x is one word too many
])
def test_a_positional_given_twice_is_refused(parse, argv, message):
    with pytest.raises(ParseError, match=message):
        parse(*argv)


@pytest.mark.parametrize("flag", ["--echo", "-c", "-f", "--dry", "--nosuch"])
def test_a_flag_after_a_task_that_is_not_its_own_is_refused(parse, flag):
    with pytest.raises(ParseError, match=f"No idea what '{flag}'"):
        parse("app.status", flag, "x")


def test_a_flag_value_that_starts_with_a_dash_is_a_value(parse):
    assert parse("ci.release", "--parallel", "-3")["ci.release"]["parallel"] == "-3"


# --- inv --list -----------------------------------------------------------------------------------


def test_every_task_docstring_starts_with_a_whole_sentence():
    from invoke.util import helpline

    from mvp_tasks import ns

    for name in ns.task_names:
        line = helpline(ns[name]).strip()
        assert line.endswith((".", "!", "?")), f"{name}: {line!r} does not end a sentence"
        assert line.count("(") == line.count(")") and line.count("`") % 2 == 0, (name, line)


def test_fit_sentence_cuts_only_when_it_must_and_at_a_word():
    from mvp_tasks.program import fit_sentence

    text = "Create or update a cluster's stack, previewing the change first."
    assert fit_sentence(text, None) == text
    assert fit_sentence(text, len(text)) == text
    short = fit_sentence(text, 40)
    assert short.endswith("…") and len(short) <= 40
    assert text.startswith(short[:-1]) and not text[len(short) - 1].isalnum(), short


# --- what `inv --list` and `inv --version` do not pay for --------------------------------------


def _run(argv: list[str], monkeypatch, capsys) -> tuple:
    from mvp_tasks.program import MvpProgram

    monkeypatch.chdir(ROOT)
    program = MvpProgram(name="mvp-studio deploy tooling")
    made = []
    real = MvpProgram._make_parser
    monkeypatch.setattr(MvpProgram, "_make_parser", lambda self: made.append(1) or real(self))
    program.run(argv, exit=False)
    return program, len(made), capsys.readouterr().out


def test_list_makes_no_parser_of_the_tasks_flags(monkeypatch, capsys):
    _, made, out = _run(["inv", "--list"], monkeypatch, capsys)
    assert made == 0 and "app.promote" in out


@pytest.mark.parametrize("argv", [["inv", "--help", "app.promote"], ["inv", "app.promote", "--help"]])
def test_help_of_a_task_makes_the_parser_once(argv, monkeypatch, capsys):
    _, made, out = _run(argv, monkeypatch, capsys)
    assert made == 1 and "--tag" in out


def test_version_is_read_from_the_installed_package_when_asked(monkeypatch, capsys):
    from importlib.metadata import version

    program, made, out = _run(["inv", "--version"], monkeypatch, capsys)
    assert out.strip() == f"mvp-studio deploy tooling {version('mvp-tasks')}" and made == 0
