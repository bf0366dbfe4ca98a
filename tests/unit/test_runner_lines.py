"""The runner passes streamed output on as whole lines: fed chunks split mid-line the way Invoke
writes them (a `flush()` after every chunk), then a real local command and a real command over SSH
(Fabric, sshd on 127.0.0.1) that write a line in pieces with pauses in between."""

from __future__ import annotations

import sys

import pytest

from mvp_tasks.image.runner import Runner, _LineSink

# Half a line, a pause long enough for the reader thread to pass the half on, then the rest.
PIECES = ["#7 writing ima", "ge sha256:5f0c 0.0s done\n#7 naming to 127.0.0.1:5000/app:abc", " done\n",
          "#8 DONE 0.1s"]
LINES = ["#7 writing image sha256:5f0c 0.0s done", "#7 naming to 127.0.0.1:5000/app:abc done", "#8 DONE 0.1s"]
WRITER = (
    "import sys, time\n"
    f"for piece in {PIECES!r}:\n"
    "    sys.stdout.write(piece); sys.stdout.flush(); time.sleep(0.3)\n"
)


def feed(chunks: list[str]) -> list[str]:
    lines: list[str] = []
    sink = _LineSink(lines.append)
    for chunk in chunks:
        sink.write(chunk)
        sink.flush()  # what invoke.Runner.write_our_output does after every chunk
    sink.finish()
    return lines


def test_chunks_split_mid_line_come_out_as_whole_lines():
    assert feed(["#7 writing ima", "ge sha256:5f0c", " 0.0s done\n#8 ", "DONE 0.1s\n"]) == [
        "#7 writing image sha256:5f0c 0.0s done", "#8 DONE 0.1s"]


def test_the_last_line_without_a_newline_is_passed_on_at_the_end():
    assert feed(["a\nb", "c"]) == ["a", "bc"]


def test_one_chunk_with_many_lines_and_carriage_returns():
    assert feed(["one\r\ntwo\n\nthree\r\n"]) == ["one", "two", "", "three"]


def test_nothing_is_passed_on_before_the_line_ends():
    lines: list[str] = []
    sink = _LineSink(lines.append)
    sink.write("#7 writing ima")
    sink.flush()
    assert lines == []
    sink.write("ge\n")
    assert lines == ["#7 writing image"]


def run_writer(runner: Runner, python: str) -> tuple[list[str], object]:
    lines: list[str] = []
    result = runner.run([python, "-c", WRITER], on_line=lines.append)
    return lines, result


def test_local_command_written_in_pieces_streams_whole_lines():
    lines, result = run_writer(Runner.local(), sys.executable)

    assert result.ok
    assert lines == LINES
    assert result.stdout.splitlines() == LINES


def test_remote_command_written_in_pieces_streams_whole_lines(ssh_server):
    runner = Runner.remote(ssh_server.host, {"key_filename": str(ssh_server.key)}, known_hosts=[str(ssh_server.known_hosts)])
    try:
        # The build host is this machine: the same interpreter is there.
        lines, result = run_writer(runner, sys.executable)
    finally:
        runner.close()

    assert result.ok
    assert lines == LINES
    assert result.stdout.splitlines() == LINES


@pytest.mark.parametrize("where", ["local", "remote"])
def test_stdout_and_stderr_lines_stay_whole_side_by_side(where, request):
    if where == "local":
        runner = Runner.local()
    else:
        ssh_server = request.getfixturevalue("ssh_server")
        runner = Runner.remote(ssh_server.host, {"key_filename": str(ssh_server.key)}, known_hosts=[str(ssh_server.known_hosts)])
    script = (
        "import sys, time\n"
        "for stream, piece in [(sys.stdout, 'out: half'), (sys.stderr, 'err: ha'), (sys.stdout, ' and half\\n'),\n"
        "                      (sys.stderr, 'lf too\\n')]:\n"
        "    stream.write(piece); stream.flush(); time.sleep(0.3)\n"
    )
    lines: list[str] = []
    try:
        runner.run([sys.executable, "-c", script], on_line=lines.append)
    finally:
        runner.close()

    assert sorted(lines) == ["err: half too", "out: half and half"]
