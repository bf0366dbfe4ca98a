"""Image registries behind one small interface: Amazon ECR (`image.ecr.EcrRegistry`) and any OCI
distribution registry over its HTTP API (`OciRegistry`, used by the sandbox and the tests).

Moving a tag is done server-side in both: the manifest under one tag is put again under another,
so there is no rebuild and no layer download.

`OciRegistry` authenticates the standard Docker/OCI way: a 401 with a `WWW-Authenticate: Bearer`
challenge is answered with a token from the challenge's realm (anonymous for public images, or with
HTTP Basic credentials), a `Basic` challenge with the credentials themselves. Credentials come from
MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD, else from `docker login`'s config.json; they never
appear in argv, logs or error messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import BuildError
from .docker import get_docker_config_dir

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")
ENV_USERNAME = "MVP_REGISTRY_USERNAME"
ENV_PASSWORD = "MVP_REGISTRY_PASSWORD"
# docker login stores Docker Hub's credentials under its historical index address.
DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}
# The repository a distribution API URL is about: /v2/<name>/{manifests,blobs,tags}/<ref>.
API_PATH = re.compile(r"^/v2/(.+)/(?:manifests|blobs|tags)/[^/]+$")
# One token of a WWW-Authenticate header: a parameter (name=value or name="value") or a bare scheme.
CHALLENGE_TOKEN = re.compile(r'\s*,?\s*(?:([A-Za-z][\w.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))|([A-Za-z][\w.-]*))')


def _json(body: bytes, host: str) -> dict:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise BuildError(f"registry {host} answered with something that is not JSON: {body[:80]!r}") from None
    return data if isinstance(data, dict) else {}


def manifest_digest(manifest: bytes) -> str:
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def env_credentials() -> tuple[str, str] | None:
    """(username, password) from MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD, or None if neither is set."""
    username = os.environ.get(ENV_USERNAME, "")
    password = os.environ.get(ENV_PASSWORD, "")
    if username and password:
        return username, password
    if username or password:
        have, missing = (ENV_USERNAME, ENV_PASSWORD) if username else (ENV_PASSWORD, ENV_USERNAME)
        raise BuildError(f"{have} is set but {missing} is not; set both, or neither to use docker login's credentials")
    return None


def _config_host(key: str) -> str:
    # Keys are "host[:port]", "https://host[:port]" or "https://index.docker.io/v1/".
    key = re.sub(r"^[a-z][a-z0-9+.-]*://", "", key.strip().lower())
    return key.split("/", 1)[0]


def docker_config_credentials(hostport: str) -> tuple[str, str] | None:
    """(username, password) for `hostport` from docker login's config.json (`$DOCKER_CONFIG`, else
    ~/.docker). Only inline `auths` entries: credential helpers (credsStore, credHelpers) are not
    run, and a missing or unreadable file means no credentials."""
    folder = get_docker_config_dir()
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {hostport.lower()} | (DOCKER_HUB if hostport.lower() in DOCKER_HUB else set())
    for key, entry in auths.items():
        if not isinstance(key, str) or not isinstance(entry, dict) or _config_host(key) not in wanted:
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                username, sep, password = base64.b64decode(auth).decode("utf-8").partition(":")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                continue
            if sep and username and password:
                return username, password
        elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str) \
                and entry["username"] and entry["password"]:
            return entry["username"], entry["password"]
    return None


def parse_challenges(values: list[str]) -> list[tuple[str, dict[str, str]]]:
    """WWW-Authenticate header values -> [(scheme in lowercase, {param: value})]."""
    challenges: list[tuple[str, dict[str, str]]] = []
    for value in values:
        position = 0
        while position < len(value):
            match = CHALLENGE_TOKEN.match(value, position)
            if not match or match.end() == position:
                break
            position = match.end()
            if match.group(4):
                challenges.append((match.group(4).lower(), {}))
            elif challenges:
                quoted = match.group(2)
                challenges[-1][1][match.group(1).lower()] = \
                    re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(3)
    return challenges


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode("utf-8")).decode("ascii")


def _opener(url: str):
    import urllib.parse
    import urllib.request

    # A loopback address is never reached through a proxy (HTTP_PROXY would otherwise apply).
    if LOOPBACK.match(urllib.parse.urlsplit(url).netloc):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


@dataclass(frozen=True)
class RepositoryChanges:
    """What a repository needs before a push, as planning read it (`get_repository_changes`):
    carried by the plan and applied exactly (`apply_repository_changes`), never worked out anew.

    `lifecycle_policy`: the repository has no lifecycle policy and gets the tool's rule (one the
    studio set is kept); `policy`: what that rule does, for people."""

    repository: str
    create: bool = False
    scan_on_push: bool = False  # turn scanning on push on
    lifecycle_policy: bool = False
    label: str = "repository"  # what the registry calls it: "ECR repository"
    policy: str = ""

    def __bool__(self) -> bool:
        return self.create or self.scan_on_push or self.lifecycle_policy

    def lines(self) -> list[str]:
        policy = f" ({self.policy})" if self.policy else ""
        if self.create:
            return [f"+ {self.label} {self.repository} (scan on push{', ' + self.policy if self.policy else ''})"]
        return ([f"~ {self.label} {self.repository}: scan on push on"] if self.scan_on_push else []) + \
            ([f"~ {self.label} {self.repository}: lifecycle policy{policy}"] if self.lifecycle_policy else [])


class Registry(Protocol):
    host: str

    def describe(self) -> str: ...

    def ref(self, repository: str, tag: str) -> str: ...

    def get_repository_changes(self, repository: str) -> RepositoryChanges: ...

    def apply_repository_changes(self, changes: RepositoryChanges) -> None: ...

    def get_digest(self, repository: str, tag: str) -> str | None: ...

    def list_tags(self, repository: str) -> list[str]: ...

    def retag(self, repository: str, source_tag: str, target_tag: str) -> str: ...

    def get_commit(self, repository: str, tag: str) -> str: ...

    def login(self, docker) -> None: ...


class OciRegistry:
    """A registry speaking the OCI distribution API (`/v2/`), anonymously or with Docker/OCI token
    or Basic authentication when it answers 401 with a challenge."""

    def __init__(self, host: str, timeout: float = 15.0):
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.hostport = self.host.split("/", 1)[0]
        # Plain HTTP only for loopback registries (the sandbox); anything else is HTTPS.
        self.scheme = "http" if LOOPBACK.match(self.hostport) else "https"
        self.base = f"{self.scheme}://{self.hostport}"
        self.prefix = self.host.split("/", 1)[1] + "/" if "/" in self.host else ""
        self._credentials: tuple[str, str] | None = None
        self._credentials_loaded = False
        # Bearer tokens by (realm, service, scope): (token, monotonic expiry).
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        # Once a challenge has been answered, later requests send the answer up front: a token whose
        # scope covers the repository and action, or (Basic registries) the credentials.
        self._basic_accepted = False
        # Targets push and retag side by side: the token cache and the credentials are shared by
        # their threads, so reads and writes of them hold this lock (a token fetch too, so two
        # threads missing the same scope fetch it once).
        import threading

        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"registry {self.host}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def _url(self, repository: str, kind: str, ref: str = "") -> str:
        return f"{self.base}/v2/{self.prefix}{repository}/{kind}/{ref}".rstrip("/")

    def _get_credentials(self) -> tuple[str, str] | None:
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = env_credentials() or docker_config_credentials(self.hostport)
                self._credentials_loaded = True
            return self._credentials

    def _send(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None,
              authorization: str = "", what: str = ""):
        import email.message
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        if authorization:
            # Not passed on through a redirect: blob storage behind a registry (S3, a CDN) must not see it.
            request.add_unredirected_header("Authorization", authorization)
        try:
            with _opener(url).open(request, timeout=self.timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers or email.message.Message(), exc.read() if exc.fp else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if what:
                raise BuildError(f"{what} cannot be reached: {reason}") from None
            raise BuildError(f"registry {self.host} cannot be reached: {reason}",
                             "check mvp.registry, or start the sandbox's registry with `inv sandbox.up`") from None

    def _refused(self, repository: str, status: int) -> BuildError:
        what = repository or "its API"
        fix = f"set {ENV_USERNAME}/{ENV_PASSWORD} or run docker login {self.hostport}"
        if status == 403:
            return BuildError(f"registry {self.hostport} denied access to {what} (HTTP 403): the account may lack "
                              f"pull/push permission; {fix}")
        if self._get_credentials():
            return BuildError(f"registry {self.hostport} refused the credentials for {what} (HTTP 401); {fix}")
        return BuildError(f"registry {self.hostport} requires credentials for {what} (HTTP 401); {fix}")

    def _fetch_token(self, realm: str, service: str, scope: str, repository: str) -> tuple[str, float]:
        import urllib.parse

        parts = urllib.parse.urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BuildError(f"registry {self.hostport} asked for a token from {realm!r}, which is not an HTTP(S) address")
        if parts.scheme == "http" and not LOOPBACK.match(parts.netloc):
            # Credentials never travel in clear text, whatever the challenge says.
            parts = parts._replace(scheme="https")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if service:
            query.append(("service", service))
        query += [("scope", one) for one in scope.split()]
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query), fragment=""))
        where = urllib.parse.urlunsplit(parts._replace(query="", fragment=""))
        credentials = self._get_credentials()
        status, _, body = self._send("GET", url, headers={"Accept": "application/json"},
                                     authorization=_basic(credentials) if credentials else "",
                                     what=f"the token service of registry {self.hostport} ({where})")
        if status in (401, 403):
            raise self._refused(repository, status)
        if status != 200:
            raise BuildError(f"the token service of registry {self.hostport} ({where}) answered HTTP {status} "
                             f"for {repository or scope}")
        data = _json(body, self.hostport)
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise BuildError(f"the token service of registry {self.hostport} ({where}) answered without a token")
        try:
            lifetime = float(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            lifetime = 60.0
        return token, time.monotonic() + max(lifetime - 10, lifetime / 2)

    def _answer(self, challenges: list[tuple[str, dict[str, str]]], repository: str, sent: str) -> str:
        """The Authorization value that answers a 401's challenges, or "" when there is nothing to try."""
        bearer = next((params for scheme, params in challenges if scheme == "bearer" and params.get("realm")), None)
        if bearer is not None:
            scope = bearer.get("scope") or (f"repository:{repository}:pull,push" if repository else "")
            service = bearer.get("service", "")
            key = (bearer["realm"], service, scope)
            with self._lock:
                cached = self._tokens.get(key)
                # A cached token that was just refused (expired early, revoked) is fetched again.
                if not cached or cached[1] <= time.monotonic() or f"Bearer {cached[0]}" == sent:
                    cached = self._tokens[key] = self._fetch_token(bearer["realm"], service, scope, repository)
            return f"Bearer {cached[0]}"
        if any(scheme == "basic" for scheme, _ in challenges):
            credentials = self._get_credentials()
            if credentials and _basic(credentials) != sent:
                return _basic(credentials)
        return ""

    def _up_front(self, repository: str, method: str) -> str:
        """The Authorization value to send before any challenge: a cached, unexpired token whose scope
        grants the action on `repository`, or the Basic credentials a Basic registry accepted."""
        if self._basic_accepted:
            credentials = self._get_credentials()
            return _basic(credentials) if credentials else ""
        action = "pull" if method in ("GET", "HEAD") else "push"
        now = time.monotonic()
        with self._lock:
            tokens = list(self._tokens.items())
        for (_, _, scope), (token, expires) in tokens:
            if expires <= now:
                continue
            for item in scope.split():
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name == repository and {action, "*"} & set(actions.split(",")):
                    return f"Bearer {token}"
        return ""

    def _request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        import urllib.parse

        match = API_PATH.match(urllib.parse.urlsplit(url).path)
        repository = match.group(1) if match else ""
        sent = self._up_front(repository, method)
        status, message, data = self._send(method, url, body, headers, sent)
        if status == 401:
            # Answer the challenge and try once more; a second 401 means the credentials do not do.
            answer = self._answer(parse_challenges(message.get_all("WWW-Authenticate") or []), repository, sent)
            if answer:
                status, message, data = self._send(method, url, body, headers, answer)
                if status not in (401, 403) and answer.startswith("Basic "):
                    self._basic_accepted = True
        if status in (401, 403):
            raise self._refused(repository, status)
        return status, dict(message), data

    def get_repository_changes(self, repository: str) -> RepositoryChanges:
        # OCI registries create a repository on its first push.
        return RepositoryChanges(repository)

    def apply_repository_changes(self, changes: RepositoryChanges) -> None:
        if changes:  # pragma: no cover - planned by get_repository_changes, which plans none
            raise BuildError(f"registry {self.host} has no repository settings to change")

    def _get_manifest(self, repository: str, tag: str, method: str = "GET"):
        status, headers, body = self._request(method, self._url(repository, "manifests", tag),
                                              headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if status == 404:
            return None
        if status != 200:
            raise BuildError(f"registry {self.host} answered HTTP {status} for {repository}:{tag}: {body[:200]!r}")
        return headers, body

    def get_digest(self, repository: str, tag: str) -> str | None:
        found = self._get_manifest(repository, tag, method="HEAD")
        if found is None:
            return None
        headers, _ = found
        digest = {k.lower(): v for k, v in headers.items()}.get("docker-content-digest")
        if digest:
            return digest
        found = self._get_manifest(repository, tag)
        return manifest_digest(found[1]) if found else None

    def list_tags(self, repository: str) -> list[str]:
        status, _, body = self._request("GET", self._url(repository, "tags", "list"))
        if status == 404:
            return []
        if status != 200:
            raise BuildError(f"registry {self.host} answered HTTP {status} listing tags of {repository}")
        return sorted(_json(body, self.host).get("tags") or [])

    def retag(self, repository: str, source_tag: str, target_tag: str) -> str:
        """Put the manifest of `source_tag` (a tag, or a `sha256:` digest) under `target_tag`."""
        found = self._get_manifest(repository, source_tag)
        if found is None:
            raise BuildError(f"image {self.ref(repository, source_tag)} does not exist; nothing to retag")
        headers, manifest = found
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", MANIFEST_TYPES[3])
        status, _, body = self._request("PUT", self._url(repository, "manifests", target_tag), body=manifest,
                                        headers={"Content-Type": content_type})
        if status not in (200, 201):
            raise BuildError(f"registry {self.host} refused tag {target_tag} for {repository} (HTTP {status}): {body[:200]!r}")
        return manifest_digest(manifest)

    def get_commit(self, repository: str, tag: str) -> str:
        """The commit an image was built from: its `org.opencontainers.image.revision` label."""
        found = self._get_manifest(repository, tag)
        if found is None:
            return ""
        manifest = _json(found[1], self.host)
        if "manifests" in manifest and manifest["manifests"]:
            # An index (multi-platform): every platform carries the same revision label.
            found = self._get_manifest(repository, manifest["manifests"][0]["digest"])
            manifest = _json(found[1], self.host) if found else {}
        config = (manifest.get("config") or {}).get("digest")
        if not config:
            return ""
        status, _, body = self._request("GET", self._url(repository, "blobs", config))
        if status != 200:
            return ""
        labels = (_json(body, self.host).get("config") or {}).get("Labels") or {}
        return labels.get("org.opencontainers.image.revision", "")

    def login(self, docker) -> None:
        """`docker login` (password on stdin) when the credentials come from MVP_REGISTRY_USERNAME and
        MVP_REGISTRY_PASSWORD, so `docker push` has them too; otherwise docker's config already has
        whatever credentials there are. `docker` is a `Docker.login_session()`, so the login ends
        with the push."""
        credentials = env_credentials()
        if credentials:
            docker.login(self.hostport, credentials[0], credentials[1])


def move_tag(registry: Registry, repository: str, source: str, tag: str, expected_digest: str = "",
             current: str | None = None) -> str:
    """Point `tag` at the image `source` (a tag or a `sha256:` digest) names, server-side, and verify
    it: the one way any tag moves. Returns the digest `tag` names afterwards.

    `expected_digest`: what `source` is known to name; a registry whose tag ends up elsewhere (a
    race with another pusher, a registry that rewrote the manifest) is an error, not a success.
    `current`: what `tag` names, as the caller has just read it ("": nothing), not read again."""
    if not expected_digest:
        expected_digest = source if source.startswith("sha256:") else (registry.get_digest(repository, source) or "")
        if not expected_digest:
            raise BuildError(f"image {registry.ref(repository, source)} does not exist; nothing to tag")
    if current is None:
        current = registry.get_digest(repository, tag) or ""
    if current != expected_digest:
        registry.retag(repository, source, tag)
    after = registry.get_digest(repository, tag)
    if after != expected_digest:
        raise BuildError(f"tag {tag} of {repository} names {after or 'nothing'} after the move, not {expected_digest}",
                         "another run may be moving it too: check with `inv app.status`, then re-run")
    return after
