"""A new project from the example (`project.new`): planned in memory, then made all at once.

`plan_new_project` reads the example project and invoke.yaml and works out every file and the
config entry, writing nothing; `create_project` writes the files into a hidden folder beside
their place and a temporary invoke.yaml beside the real one, then renames both into place with
interrupts held back, so an interrupt or a failure leaves either the whole project or nothing.

invoke.yaml is edited as text (one block inserted after the last project's last line), so its
comments and layout stay as they are; the edit is verified by reading the result back, which must
be the old config plus exactly the new entry.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import ConfigError, MvpError, UsageError

EXAMPLE = "museum-adventure"
CONFIG_FILE = "invoke.yaml"
EXAMPLE_PORT = 80
# nginx's stock server block, on another port (the example serves /usr/share/nginx/html on 80).
NGINX_CONF = """\
# Made by `inv project.new`: nginx serves the site on {port}, the port the task definition's
# ContainerPort names (mvp.projects.{name}.parameters in invoke.yaml).
server {{
    listen       {port};
    listen  [::]:{port};
    server_name  localhost;

    location / {{
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }}
}}
"""
INDEX_HTML = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{name}</title>
</head>
<body>
  <main>
    <h1>{name}</h1>
    <p>A placeholder page made by <code>inv project.new {name}</code>. Put the app's files in
      <code>projects/{name}/site/</code>.</p>
  </main>
</body>
</html>
"""


class ScaffoldError(MvpError):
    """The project cannot be made as asked; nothing was created."""


@dataclass(frozen=True)
class NewProject:
    name: str
    clusters: tuple[str, ...]
    port: int
    files: Mapping[str, str]  # path inside projects/NAME/ -> text
    entry: Mapping[str, Any]  # mvp.projects.NAME
    config_before: str        # invoke.yaml as read
    config_after: str         # invoke.yaml with the entry

    @property
    def folder(self) -> str:
        return f"projects/{self.name}"

    def lines(self) -> list[str]:
        shown = ", ".join(self.clusters)
        lines = [f"+ {self.folder}/{path}" for path in sorted(self.files)]
        extra = f", ContainerPort {self.port}" if "parameters" in self.entry else ""
        lines.append(f"~ {CONFIG_FILE}: + mvp.projects.{self.name} (clusters: [{shown}]{extra})")
        return lines


# --- planning ------------------------------------------------------------------------------------


def parse_clusters(value: str | None, settings: Any) -> tuple[str, ...]:
    names = [settings.default_cluster] if value is None else [n.strip() for n in str(value).split(",")]
    if any(not n for n in names):
        raise UsageError(f"--clusters {value!r}: an empty name; give NAME[,NAME...]")
    known = ", ".join(sorted(settings.clusters)) or "none"
    for name in names:
        if name not in settings.clusters:
            raise UsageError(f"--clusters: unknown cluster {name!r} (configured: {known})" if value is not None
                             else f"the default cluster {name!r} is not configured (configured: {known})",
                             "add it under mvp.clusters in invoke.yaml first, or pick a configured one")
    return tuple(dict.fromkeys(names))


def parse_port(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"--port {value!r}: give a port number from 1 to 65535")
    return int(text)


def plan_new_project(settings: Any, name: str, clusters: tuple[str, ...], port: int | None) -> NewProject:
    """Everything `project.new` would make, or a ScaffoldError; reads, writes nothing."""
    from .settings import check_project_name

    root = Path(settings.root)
    # A valid project name is a valid stack name, and so is NAME-CLUSTER (63 + 1 + 31 < 128).
    check_project_name(name)
    folder = root / "projects" / name
    if folder.exists() or folder.is_symlink():
        raise ScaffoldError(f"projects/{name}/ exists already", "pick another name, or edit that project")
    if name in settings.projects:
        raise ScaffoldError(f"mvp.projects.{name} is configured already (without its folder projects/{name}/)",
                            "pick another name, or remove that entry from invoke.yaml")
    example = root / "projects" / EXAMPLE
    dockerfile = _read(example / "Dockerfile", f"the example's Dockerfile projects/{EXAMPLE}/Dockerfile")
    template = _read(example / "deploy.yml", f"the example's template projects/{EXAMPLE}/deploy.yml")
    dockerfile, template = dockerfile.replace(EXAMPLE, name), template.replace(EXAMPLE, name)
    files = {"Dockerfile": dockerfile, "deploy.yml": template, "site/index.html": INDEX_HTML.format(name=html.escape(name))}
    entry: dict[str, Any] = {"clusters": list(clusters)}
    default = _default_port(template)
    if port is not None and port != default:
        if default is None:
            raise ScaffoldError(f"--port: the example template projects/{EXAMPLE}/deploy.yml has no ContainerPort "
                                "parameter with a Default to set", "leave --port out")
        files["Dockerfile"] = _dockerfile_on_port(dockerfile, default, port)
        files["nginx.conf"] = NGINX_CONF.format(port=port, name=name)
        entry["parameters"] = {"ContainerPort": port}
    config_path = root / CONFIG_FILE
    before = _read(config_path, f"the studio's config {CONFIG_FILE}")
    after = add_project_entry(before, name, entry)
    check_new_config(settings, before, after, name, entry)
    return NewProject(name, tuple(clusters), port or default or EXAMPLE_PORT, files, entry, before, after)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScaffoldError(f"{what} is missing", "restore it: project.new copies it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScaffoldError(f"{what} cannot be read: {exc}") from None


def _default_port(template: str) -> int | None:
    from .templates import parse_template

    try:
        spec = (parse_template(template, "deploy.yml").get("Parameters") or {}).get("ContainerPort") or {}
        return int(spec["Default"])
    except (MvpError, KeyError, TypeError, ValueError, AttributeError):
        return None


EXPOSE = re.compile(r"^EXPOSE[ \t]+(\d+)(/tcp)?[ \t]*$", re.M)


def _dockerfile_on_port(text: str, old: int, port: int) -> str:
    """The example's Dockerfile serving on `port`: nginx's server block replaced, EXPOSE moved."""
    exposed = [m for m in EXPOSE.finditer(text) if int(m.group(1)) == old]
    if len(exposed) != 1:
        raise ScaffoldError(f"--port: the example Dockerfile projects/{EXAMPLE}/Dockerfile does not have exactly one "
                            f"`EXPOSE {old}` line to change", "leave --port out, then change the port by hand")
    m = exposed[0]
    block = ("# nginx listens where the task definition's ContainerPort says (invoke.yaml)\n"
             "COPY nginx.conf /etc/nginx/conf.d/default.conf\n"
             f"EXPOSE {port}")
    text = text[:m.start()] + block + text[m.end():]
    return re.sub(rf"\bport {old}\b", f"port {port}", text)


# --- invoke.yaml ---------------------------------------------------------------------------------


def entry_lines(name: str, entry: Mapping[str, Any], indent: int, step: int) -> list[str]:
    pad, inner = " " * indent, " " * (indent + step)
    lines = [f"{pad}{name}:\n", f"{inner}clusters: [{', '.join(entry['clusters'])}]\n"]
    if entry.get("parameters"):
        lines.append(f"{inner}parameters:\n")
        lines += [f"{inner}{' ' * step}{k}: {v}\n" for k, v in entry["parameters"].items()]
    return lines


def add_project_entry(text: str, name: str, entry: Mapping[str, Any]) -> str:
    """invoke.yaml's text with `mvp.projects.NAME` added after the last project, in the file's own
    indentation; every other line as it was. A layout it cannot extend safely is refused."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ScaffoldError(f"{CONFIG_FILE} cannot be read as YAML: {str(exc).splitlines()[0]}",
                            "correct it first") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    refuse = ScaffoldError(f"{CONFIG_FILE} is laid out in a way project.new cannot extend safely",
                           f"add mvp.projects.{name} by hand (clusters: [{', '.join(entry['clusters'])}])")
    if root is None:
        return "".join(lines) + "mvp:\n  projects:\n" + "".join(entry_lines(name, entry, 4, 2))
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise refuse
    mvp = _find(root, "mvp")
    if mvp is None:
        at = _last_line(root) + 1
        new = ["mvp:\n", "  projects:\n", *entry_lines(name, entry, 4, 2)]
    else:
        mvp_key, mvp_value = mvp
        if not isinstance(mvp_value, yaml.MappingNode) or mvp_value.flow_style or not mvp_value.value:
            raise refuse
        indent = mvp_value.value[0][0].start_mark.column
        step = indent - mvp_key.start_mark.column
        projects = _find(mvp_value, "projects")
        if projects is None:
            at = _last_line(mvp_value) + 1
            new = [f"{' ' * indent}projects:\n", *entry_lines(name, entry, indent + step, step)]
        else:
            key, value = projects
            if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
                first = value.value[0][0].start_mark.column
                at = _last_line(value) + 1
                new = entry_lines(name, entry, first, first - key.start_mark.column)
            elif _is_empty(value) and value.start_mark.line == key.start_mark.line:
                # `projects: {}` or `projects:` (null): the value goes, the entry comes under the key.
                row = key.start_mark.line
                line = lines[row]
                start = value.start_mark.column
                end = value.end_mark.column if value.end_mark.line == row else start
                lines[row] = (line[:start].rstrip() + line[end:]) if end > start else line
                if not lines[row].endswith("\n"):
                    lines[row] += "\n"
                at = row + 1
                new = entry_lines(name, entry, key.start_mark.column + step, step)
            else:
                raise refuse
    return "".join(lines[:at] + new + lines[at:])


def _find(mapping: Any, key: str):
    import yaml

    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _is_empty(node: Any) -> bool:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return node.flow_style and not node.value
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _last_line(node: Any) -> int:
    """The 0-based index of the last line that holds any of `node`'s content (not the comments or
    blank lines after it, which stay below an entry inserted there)."""
    import yaml

    last = 0
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode) and not n.flow_style:
            for k, v in n.value:
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode) and not n.flow_style:
            stack += n.value
        else:
            end = n.end_mark
            line = end.line - 1 if end.column == 0 and end.line > n.start_mark.line else end.line
            last = max(last, line)
    return last


def check_new_config(settings: Any, before: str, after: str, name: str, entry: Mapping[str, Any]) -> None:
    """The edited invoke.yaml reads back as the old one plus exactly the new entry, and validates."""
    import copy

    import yaml

    from .settings import load_settings

    refused = ScaffoldError(f"could not add mvp.projects.{name} to {CONFIG_FILE} without changing anything else",
                            f"add it by hand (clusters: [{', '.join(entry['clusters'])}])")
    try:
        old, new = yaml.safe_load(before) or {}, yaml.safe_load(after)
    except yaml.YAMLError:
        raise refused from None
    expected = copy.deepcopy(old)
    mvp = expected.setdefault("mvp", {}) if isinstance(expected, dict) else None
    if isinstance(mvp, dict):
        if mvp.get("projects") is None:
            mvp["projects"] = {}
        mvp["projects"][name] = dict(entry)
    if new != expected:
        raise refused
    # The new entry as load_settings takes it, beside the configured clusters.
    clusters = {c: {"template": cluster.template} for c, cluster in settings.clusters.items()}
    try:
        load_settings({"mvp": {"default_cluster": settings.default_cluster, "clusters": clusters,
                               "projects": {name: dict(entry)}}}, settings.root)
    except ConfigError as exc:
        raise ScaffoldError(f"the new entry mvp.projects.{name} would not validate: {exc}") from None


def check_made(settings: Any, new: NewProject, folder: Path) -> None:
    """The files made in `folder` must pass project.check's checks of a project (but LFS: nothing
    there is in git yet) before they are put in place."""
    from .checks import Checker, describe_errors, errors_in
    from .settings import ProjectSettings

    project = ProjectSettings(name=new.name, clusters=new.clusters, template="deploy.yml",
                              parameters={k: str(v) for k, v in (new.entry.get("parameters") or {}).items()},
                              build_args={}, repository=new.name)
    findings = Checker(settings).check_project(project, lfs=False, folder=folder)
    if errors_in(findings):
        raise ScaffoldError(f"the new project would fail project.check: {describe_errors(findings)}",
                            f"correct the example projects/{EXAMPLE}/ first; nothing was made")


# --- making it -----------------------------------------------------------------------------------


@contextlib.contextmanager
def interrupts_as_errors() -> Iterator[None]:
    """The first Ctrl-C or SIGTERM raises KeyboardInterrupt within, so the cleanup of half-made
    files runs for either. Later ones are let pass: raised again they could cut short that cleanup
    (it takes milliseconds), and exiting at once would skip it."""
    from .interrupts import handle_interrupts

    def stop(name: str) -> None:
        raise KeyboardInterrupt(name)

    with handle_interrupts(stop, on_again=lambda name: None):
        yield


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """No SIGINT or SIGTERM between the two renames: they arrive once both are done."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def create_project(root: Path, new: NewProject, verify: Callable[[Path], None] | None = None) -> None:
    """Write the project into a hidden folder beside its place and invoke.yaml into a temporary file
    beside it; `verify(folder)` may refuse the made files; then both are renamed into place."""
    root = Path(root)
    projects = root / "projects"
    config = root / CONFIG_FILE
    staging: Path | None = None
    config_tmp: Path | None = None
    try:
        # Interrupts are held back from the moment a temporary file exists until the `finally`
        # below knows its name (here and at _write_beside).
        with interrupts_held():
            staging = Path(tempfile.mkdtemp(prefix=f".{new.name}.new-", dir=projects))
        for path, text in new.files.items():
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())
        if verify is not None:
            verify(staging)
        final = projects / new.name
        with interrupts_held():
            config_tmp = _write_beside(config, new.config_after)
            if config.read_text(encoding="utf-8") != new.config_before:
                raise ScaffoldError(f"{CONFIG_FILE} changed while project.new ran", "run it again")
            if final.exists() or final.is_symlink():
                raise ScaffoldError(f"projects/{new.name}/ appeared while project.new ran", "pick another name")
            os.rename(staging, final)
            try:
                os.replace(config_tmp, config)
            except BaseException:
                os.rename(final, staging)
                raise
            config_tmp = None
    except OSError as exc:
        raise ScaffoldError(f"cannot make projects/{new.name}/: {exc}", "nothing was created") from None
    finally:
        try:
            _remove(config_tmp, staging)
        except KeyboardInterrupt:  # the one interrupt came while cleaning up: finish, then stop
            _remove(config_tmp, staging)
            raise


def _remove(*paths: Path | None) -> None:
    for path in paths:
        if path is not None and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path is not None:
            path.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask, read without setting it (os.umask can only read by setting)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _write_beside(path: Path, text: str) -> Path:
    """`text` in a new file beside `path` (same folder, so a rename replaces it atomically), with
    `path`'s permissions, flushed to disk."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
