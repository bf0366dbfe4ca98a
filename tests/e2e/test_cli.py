"""The CLI surface: `inv --list`, `--help`, and the local sandbox's life cycle."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from conftest import BIN, ROOT, assert_one_line_error, free_port, inv_env, run_inv

pytestmark = pytest.mark.e2e

HEAVY = ("boto3", "botocore", "rich", "moto", "fabric", "paramiko")


@pytest.mark.parametrize("argv", [["inv", "--list"], ["inv", "--help", "cluster.up"]])
def test_list_and_help_do_not_import_heavy_modules(argv):
    code = (
        "import sys\n"
        f"sys.argv = {argv!r}\n"
        "from mvp_tasks.program import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_every_task_has_a_docstring_and_help_for_each_flag():
    from mvp_tasks import ns

    for name in ns.task_names:
        task = ns[name]
        assert task.__doc__ and task.__doc__.strip(), name
        params = [p for p in task.argspec(task.body).parameters if p != "ctx"]
        for param in params:
            # Invoke shows `from_` as --from and looks its help up under either name.
            assert param in task.help or param.rstrip("_") in task.help, f"{name}: --{param} has no help"


@pytest.mark.parametrize("task", ["app.deploy", "app.promote", "ci.release", "cluster.up", "app.history"])
def test_help_of_a_task_shows_every_flag_with_its_help_text(task):
    """What `inv --help TASK` prints, as a person reads it (Invoke's get_arguments consumes help
    texts on first use; the strict parser and completion must not eat them)."""
    from mvp_tasks import ns

    result = subprocess.run([str(BIN / "inv"), "--help", task], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for param, help_text in ns[task].help.items():
        flag = "--" + param.rstrip("_").replace("_", "-")
        assert flag in result.stdout, (flag, result.stdout)
        assert " ".join(help_text.split()) in text, (flag, result.stdout)


# Invoke's core options for its command runner, which no task here uses (issue 16 item 7).
DROPPED = ("--dry", "-R", "--echo", "-e,", "--hide", "--pty", "-p,", "--warn-only", "-w,", "--command-timeout",
           "-T", "--prompt-for-sudo-password", "--write-pyc")
KEPT = ("--list", "--help", "--version", "--complete", "--print-completion-script", "--config", "--debug",
        "--collection", "--list-format")


def test_help_lists_only_the_core_options_that_work_here():
    result = subprocess.run([str(BIN / "inv"), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in DROPPED:
        assert option not in result.stdout, (option, result.stdout)
    for option in KEPT:
        assert option in result.stdout, (option, result.stdout)


def test_list_shows_one_whole_sentence_per_task():
    """Not a terminal: nothing to fit, so each description is its task's first sentence, whole, on
    the task's own line (Invoke showed the docstring's first line, wrapped or cut where it ended)."""
    from mvp_tasks import ns

    result = subprocess.run([str(BIN / "inv"), "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines()[1:] if line.strip()]
    assert len(lines) == len(ns.task_names), result.stdout
    for line in lines:
        name, description = line.split(None, 1)
        assert name in ns.task_names, line
        assert description.endswith("."), line
        docstring = " ".join(ns[name].__doc__.split())
        assert docstring.startswith(description), (description, docstring)
        rest = docstring[len(description):]
        assert rest == "" or rest.startswith(" ") and rest[1:2].isupper(), (line, rest)


def test_completion_offers_task_flags_and_names(studio):
    def complete(*words: str) -> list[str]:
        result = run_inv(studio, "--complete", "--", "inv", *words)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert {"--tag", "--from", "--check"} <= set(complete("app.promote", "--"))
    assert {"stage", "prod"} <= set(complete("cluster.up", ""))
    # After an optional NAME given as a word, the task's flags still complete.
    assert "--check" in complete("cluster.up", "stage", "--")
    assert {"stage", "prod"} <= set(complete("app.deploy", "museum-adventure", "--cluster"))


def test_sandbox_up_status_down(studio):
    import shutil

    from conftest import need

    for program in ("dockerd", "docker-registry", "busybox"):
        need(shutil.which(program) is not None, f"{program} is not installed (make provision)")
    port, registry_port = free_port(), free_port()
    state = studio / ".sbx"
    env = inv_env(None, INVOKE_MVP_SANDBOX_PORT=str(port), INVOKE_MVP_SANDBOX_DIR=".sbx",
                  INVOKE_MVP_SANDBOX_REGISTRY_PORT=str(registry_port))
    env.pop("DOCKER_HOST", None)
    env.pop("AWS_ENDPOINT_URL", None)
    try:
        up = run_inv(studio, "sandbox.up", env=env, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"127.0.0.1:{port}" in up.stdout
        # The server really answers on loopback, and its state file is in the sandbox folder.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=10) as resp:
            assert resp.status == 200
        assert json.loads((state / "moto.json").read_text())["port"] == port
        # The registry answers too, and the private engine has the base image.
        with urllib.request.urlopen(f"http://127.0.0.1:{registry_port}/v2/", timeout=10) as resp:
            assert resp.status == 200
        docker_host = (state / "docker" / "host").read_text().strip()
        client = (state / "docker" / "client").read_text().strip()
        inspect = subprocess.run([client, "--host", docker_host, "image", "inspect", "mvp-sandbox/httpd:latest"],
                                 capture_output=True, text=True, timeout=60)
        assert inspect.returncode == 0, inspect.stderr

        again = run_inv(studio, "sandbox.up", env=env)
        assert again.returncode == 0 and "ok: aws" in again.stdout

        status = run_inv(studio, "sandbox.status", "--json", env=env)
        data = json.loads(status.stdout)
        assert data["aws"]["endpoint"] == f"http://127.0.0.1:{port}"
        assert data["registry"]["address"] == f"127.0.0.1:{registry_port}"
        assert data["docker"]["running"] is True

        # While it is up, tasks target it without further flags.
        cluster = run_inv(studio, "cluster.up", "--name", "stage", env=env)
        assert cluster.returncode == 0, cluster.stdout + cluster.stderr
        assert f"sandbox http://127.0.0.1:{port}" in cluster.stdout
        import boto3

        cfn = boto3.client("cloudformation", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        assert cfn.describe_stacks(StackName="stage")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    finally:
        down = run_inv(studio, "sandbox.down", env=env)
        subprocess.run(["rm", "-rf", str(state)], check=False)
    assert down.returncode == 0, down.stderr
    assert "changed: aws" in down.stdout
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2)
    assert not (state / "moto.json").exists()


def test_sandbox_up_on_a_taken_port_says_so(studio):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = inv_env(None, INVOKE_MVP_SANDBOX_PORT=str(port), INVOKE_MVP_SANDBOX_DIR=".sbx")
        result = run_inv(studio, "sandbox.up", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"port 127.0.0.1:{port} is taken" in result.stderr


def test_promote_takes_an_optional_positional_name(aws, studio):
    env = inv_env(aws.endpoint)
    named = run_inv(studio, "app.promote", "nosuch", "--tag", "prod", env=env)
    assert_one_line_error(named, "unknown project 'nosuch'")
    after = run_inv(studio, "app.promote", "--tag", "prod", "nosuch", env=env)
    assert_one_line_error(after, "unknown project 'nosuch'")
    # Without a name it is not a parse error: it goes on to every project (and finds no cluster here).
    unnamed = run_inv(studio, "app.promote", "--tag", "prod", env=env)
    assert_one_line_error(unnamed, "cluster prod does not exist")
    # Without NAME and outside projects/NAME/, a task that needs one says so.
    required = run_inv(studio, "app.deploy", env=env)
    assert_one_line_error(required, "app.deploy needs NAME", "inv --help app.deploy")


@pytest.mark.parametrize("debug", [("-d",), ("--debug",)])
def test_debug_output_never_shows_a_secret_value(aws, studio, debug):
    """`-d` is kept (Invoke's own debug lines), but botocore's request bodies are not logged: an SSM
    PutParameter body holds the secret's value."""
    value = "s3cr3t-debug-value"
    result = run_inv(studio, *debug, "app.secret.set", "museum-adventure", "DEBUG_CHECK",
                     env=inv_env(aws.endpoint), input=value)
    assert result.returncode == 0, result.stderr
    assert "invoke.parser" in result.stderr  # the debug output is there
    assert value not in result.stdout + result.stderr
    stored = aws.client("ssm").get_parameter(Name="/mvp/stage/museum-adventure/DEBUG_CHECK", WithDecryption=True)
    assert stored["Parameter"]["Value"] == value
