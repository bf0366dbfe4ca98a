"""Trusting a build host by its SSH host key: the known_hosts names and lines the refusals point
at, the `mvp.build.known_hosts` setting, and `Runner.remote` against the test sshd with known_hosts
files of the test's own (HOME is the test's: the developer's ~/.ssh is never read)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import paramiko
import pytest

from mvp_tasks.errors import BuildError, ConfigError
from mvp_tasks.image.runner import (
    Runner, find_known_host_line, get_fingerprint, get_known_hosts_name,
)
from mvp_tasks.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def make_key(folder: Path, name: str) -> Path:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   capture_output=True, timeout=30)
    return Path(f"{path}.pub")


def public_key(pub: Path) -> paramiko.PKey:
    kind, data = pub.read_text().split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


@pytest.fixture
def own_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_hosts_off_port_22_are_named_with_their_port():
    assert get_known_hosts_name("build.example.com", 22) == "build.example.com"
    assert get_known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_fingerprint_is_the_one_ssh_keygen_shows(tmp_path):
    pub = make_key(tmp_path, "key")
    shown = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout

    assert get_fingerprint(public_key(pub)) == shown.split()[1]


def test_the_line_that_holds_a_key_is_found_plain_or_hashed(tmp_path):
    ours, theirs = public_key(make_key(tmp_path, "ours")), public_key(make_key(tmp_path, "theirs"))
    plain = tmp_path / "plain"
    plain.write_text(
        "# comment\n\n"
        f"[127.0.0.1]:2222 ssh-ed25519 {theirs.get_base64()}\n"
        f"@revoked [127.0.0.1]:2222 ssh-ed25519 {ours.get_base64()}\n"
        "not a host key line\n"
        f"other.example.com,[127.0.0.1]:2222 ssh-ed25519 {ours.get_base64()}\n"
    )
    hashed = tmp_path / "hashed"
    hashed.write_text(f"[127.0.0.1]:2222 ssh-ed25519 {ours.get_base64()}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], check=True, capture_output=True, timeout=30)
    assert hashed.read_text().startswith("|1|")

    assert find_known_host_line([str(plain)], "[127.0.0.1]:2222", ours) == (str(plain), 6)
    assert find_known_host_line([str(plain)], "[127.0.0.1]:2222", theirs) == (str(plain), 3)
    assert find_known_host_line([str(tmp_path / "absent"), str(hashed)], "[127.0.0.1]:2222", ours) == (str(hashed), 1)
    assert find_known_host_line([str(hashed)], "[127.0.0.1]:2223", ours) is None


def test_known_hosts_setting_is_a_path_or_empty():
    base = {"mvp": {"build": {"known_hosts": "~/.config/mvp/known_hosts"}}}
    assert load_settings(base, ROOT).build.known_hosts == "~/.config/mvp/known_hosts"
    assert load_settings({}, ROOT).build.known_hosts == ""
    with pytest.raises(ConfigError) as info:
        load_settings({"mvp": {"build": {"known_hosts": "hosts; rm -rf /"}}}, ROOT)
    assert "mvp.build.known_hosts" in str(info.value) and "\n" not in str(info.value)


def run_true(ssh_server, known_hosts: list[str]) -> None:
    runner = Runner.remote(ssh_server.host, {"key_filename": str(ssh_server.key)}, known_hosts=known_hosts)
    try:
        runner.run(["true"])
    finally:
        runner.close()


def test_a_hashed_known_hosts_line_trusts_the_host(ssh_server, own_home, tmp_path):
    (own_home / ".ssh").mkdir()
    known_hosts = own_home / ".ssh" / "known_hosts"
    known_hosts.write_text(ssh_server.known_hosts_line)
    # Debian's ssh_config hashes the names ssh writes (HashKnownHosts yes).
    subprocess.run(["ssh-keygen", "-H", "-f", str(known_hosts)], check=True, capture_output=True, timeout=30)

    run_true(ssh_server, [])


def test_a_host_trusted_nowhere_is_refused_before_any_command(ssh_server, own_home):
    before = ssh_server.log.read_text().count("Accepted publickey")

    with pytest.raises(BuildError) as info:
        run_true(ssh_server, [])

    text = str(info.value)
    assert "\n" not in text
    assert f"build host 127.0.0.1:{ssh_server.port} is not in known_hosts (~/.ssh/known_hosts" in text
    assert ssh_server.fingerprint in text
    assert f"`ssh-keyscan -p {ssh_server.port} 127.0.0.1 >> ~/.ssh/known_hosts`" in text
    assert ssh_server.log.read_text().count("Accepted publickey") == before
    assert not (own_home / ".ssh").exists()  # nothing was written to the user's known_hosts


def test_a_configured_known_hosts_that_cannot_be_read_is_one_line(ssh_server, own_home, tmp_path):
    with pytest.raises(BuildError, match=r"cannot read known_hosts file .*absent: No such file"):
        run_true(ssh_server, [str(tmp_path / "absent")])

    broken = tmp_path / "broken"
    broken.write_text(f"[127.0.0.1]:{ssh_server.port} ssh-ed25519 not*base64\n")
    with pytest.raises(BuildError) as info:
        run_true(ssh_server, [str(broken)])
    assert "has a line that is not a host key" in str(info.value) and "\n" not in str(info.value)
