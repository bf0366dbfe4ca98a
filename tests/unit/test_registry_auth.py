"""OciRegistry's Docker/OCI registry authentication, against a fake registry + token server on
127.0.0.1 (http.server in a thread, free port): Bearer tokens from the challenge's realm, Basic
challenges, credentials from MVP_REGISTRY_USERNAME/PASSWORD or docker's config.json, anonymous
tokens, token reuse, and the one-line errors that never show the password."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from invoke import Result

from mvp_tasks.image.docker import Docker
from mvp_tasks.image.registry import OciRegistry, parse_challenges
from mvp_tasks.image.runner import Runner
from mvp_tasks.errors import BuildError

USER, PASSWORD = "ci-bot", "s3cret-Pa55word"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SERVICE = "fake-registry"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """An OCI distribution registry that demands auth, with its own token service at /token.

    mode "bearer": /v2/ wants `Authorization: Bearer <token>` whose grant covers the repository
    and action (pull for GET/HEAD, push for PUT); otherwise 401 with a Bearer challenge whose realm
    is this server's /token. mode "basic": /v2/ wants Basic credentials, else a Basic challenge.
    /token checks Basic credentials; without any it grants pull-only tokens if `anonymous`.
    Blobs are served by a 307 redirect to /storage/<digest>, like registries backed by S3."""

    def __init__(self, mode: str = "bearer", anonymous: bool = False, token_key: str = "token"):
        self.mode = mode
        self.anonymous = anonymous
        self.token_key = token_key
        self.users = {USER: PASSWORD}
        self.forbidden: set[str] = set()
        self.pull_only = False
        self.tokens: dict[str, dict[str, set[str]]] = {}  # token -> {repository: actions}
        self.token_requests: list[dict] = []  # {"query": {...}, "user": str | None}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.storage_auth: list[str | None] = []
        self.challenged = 0  # /v2/ requests answered 401
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add_image(self, repository: str, tag: str, commit: str = COMMIT) -> str:
        config = json.dumps({"config": {"Labels": {"org.opencontainers.image.revision": commit}}}).encode()
        self.blobs[sha256(config)] = config
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": sha256(config), "size": len(config)},
                               "layers": []}).encode()
        self.manifests[(repository, tag)] = (OCI_MANIFEST, manifest)
        self.manifests[(repository, sha256(manifest))] = (OCI_MANIFEST, manifest)
        return sha256(manifest)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def tags(self, repository: str) -> list[str]:
        return sorted(t for (r, t) in self.manifests if r == repository and not t.startswith("sha256:"))

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, headers: dict | None = None):
                body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
                self._answer(status, body, {"Content-Type": "application/json", **(headers or {})})

            def _basic_user(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Basic "):
                    return None
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                return user if fake.users.get(user) == password else ""

            def _token(self, url: urllib.parse.SplitResult):
                query = urllib.parse.parse_qs(url.query)
                user = self._basic_user()
                with fake.lock:
                    fake.token_requests.append({"query": query, "user": user})
                if query.get("service") != [SERVICE] or user == "" or (user is None and not fake.anonymous):
                    return self._error(401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="token"'})
                grants: dict[str, set[str]] = {}
                for scope in query.get("scope", []):
                    _, name, actions = scope.split(":")
                    granted = set(actions.split(",")) if user and not fake.pull_only else {"pull"} & set(actions.split(","))
                    grants[name] = grants.get(name, set()) | granted
                token = secrets.token_hex(16)
                fake.tokens[token] = grants
                self._answer(200, json.dumps({fake.token_key: token, "expires_in": 300}).encode(),
                             {"Content-Type": "application/json"})

            def _allowed(self, repository: str, action: str) -> bool:
                auth = self.headers.get("Authorization", "")
                if fake.mode == "basic":
                    return bool(self._basic_user())
                return auth.startswith("Bearer ") and action in fake.tokens.get(auth[7:], {}).get(repository, set())

            def _challenge(self, repository: str, action: str) -> dict:
                if fake.mode == "basic":
                    return {"WWW-Authenticate": 'Basic realm="fake registry"'}
                scope = f"repository:{repository}:{'pull' if action == 'pull' else 'pull,push'}"
                return {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="{SERVICE}",'
                                            f'scope="{scope}"'}

            def _handle(self):
                url = urllib.parse.urlsplit(self.path)
                with fake.lock:
                    fake.requests.append((self.command, url.path, self.headers.get("Authorization")))
                if url.path == "/token":
                    return self._token(url)
                if url.path.startswith("/storage/"):
                    fake.storage_auth.append(self.headers.get("Authorization"))
                    blob = fake.blobs.get(url.path[len("/storage/"):])
                    return self._answer(200, blob) if blob else self._error(404, "BLOB_UNKNOWN")
                match = re.fullmatch(r"/v2/(.+)/(manifests|blobs|tags)/([^/]+)", url.path)
                if not match:
                    return self._error(404, "NOT_FOUND")
                repository, kind, ref = match.groups()
                action = "push" if self.command == "PUT" else "pull"
                if not self._allowed(repository, action):
                    fake.challenged += 1
                    return self._error(401, "UNAUTHORIZED", self._challenge(repository, action))
                if repository in fake.forbidden:
                    return self._error(403, "DENIED")
                if kind == "tags":
                    return self._answer(200, json.dumps({"name": repository, "tags": fake.tags(repository)}).encode(),
                                        {"Content-Type": "application/json"})
                if kind == "blobs":
                    if ref not in fake.blobs:
                        return self._error(404, "BLOB_UNKNOWN")
                    return self._answer(307, headers={"Location": f"http://{fake.host}/storage/{ref}"})
                if self.command == "PUT":
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    fake.manifests[(repository, ref)] = (self.headers.get("Content-Type", ""), body)
                    fake.manifests[(repository, sha256(body))] = (self.headers.get("Content-Type", ""), body)
                    return self._answer(201, headers={"Docker-Content-Digest": sha256(body)})
                found = fake.manifests.get((repository, ref))
                if not found:
                    return self._error(404, "MANIFEST_UNKNOWN")
                content_type, body = found
                self._answer(200, body, {"Content-Type": content_type, "Docker-Content-Digest": sha256(body)})

            do_GET = do_HEAD = do_PUT = _handle

        return Handler

    def start(self) -> "FakeRegistry":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No credentials from the outside: no MVP_REGISTRY_* variables, an empty DOCKER_CONFIG."""
    monkeypatch.delenv("MVP_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("MVP_REGISTRY_PASSWORD", raising=False)
    config = tmp_path / "docker-config"
    config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


@pytest.fixture
def env_credentials(monkeypatch, clean_env):
    monkeypatch.setenv("MVP_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MVP_REGISTRY_PASSWORD", PASSWORD)


@pytest.fixture
def make_registry():
    started: list[FakeRegistry] = []

    def make(**kwargs) -> FakeRegistry:
        fake = FakeRegistry(**kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


def write_docker_config(folder, auths: dict, **extra) -> None:
    (folder / "config.json").write_text(json.dumps({"auths": auths, **extra}))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_one_line_without_password(error: BuildError) -> str:
    text = str(error)
    assert "\n" not in text
    assert PASSWORD not in text and PASSWORD not in repr(error) and PASSWORD not in error.hint
    assert b64(f"{USER}:{PASSWORD}") not in text
    return text


# --- Bearer tokens with credentials from the environment -------------------------------------------


def test_bearer_registry_with_env_credentials(make_registry, env_credentials):
    fake = make_registry()
    digest = fake.add_image("app", COMMIT)
    registry = OciRegistry(fake.host, timeout=5)

    assert registry.get_digest("app", COMMIT) == digest
    assert registry.get_digest("app", "missing") is None
    assert registry.list_tags("app") == [COMMIT]
    assert registry.retag("app", COMMIT, "stage") == digest
    assert fake.tags("app") == [COMMIT, "stage"]
    assert registry.get_commit("app", "stage") == COMMIT
    # Every token request carried the credentials, for the scope the challenge named.
    assert fake.token_requests and all(r["user"] == USER for r in fake.token_requests)
    assert {tuple(r["query"]["scope"]) for r in fake.token_requests} == \
        {("repository:app:pull",), ("repository:app:pull,push",)}
    assert all(r["query"]["service"] == [SERVICE] for r in fake.token_requests)
    # The manifest PUT went with a token, and the token never followed the blob redirect to storage.
    assert any(m == "PUT" and (a or "").startswith("Bearer ") for m, _, a in fake.requests)
    assert fake.storage_auth == [None]


def test_namespace_prefix_is_part_of_the_scope(make_registry, env_credentials):
    fake = make_registry()
    digest = fake.add_image("studio/app", "1")
    registry = OciRegistry(f"{fake.host}/studio", timeout=5)

    assert registry.get_digest("app", "1") == digest
    assert fake.token_requests[0]["query"]["scope"] == ["repository:studio/app:pull"]


def test_access_token_key_is_accepted(make_registry, env_credentials):
    fake = make_registry(token_key="access_token")
    digest = fake.add_image("app", "1")

    assert OciRegistry(fake.host, timeout=5).get_digest("app", "1") == digest


def test_token_is_reused_per_scope(make_registry, env_credentials):
    fake = make_registry()
    fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)

    registry.get_digest("app", "1")
    registry.list_tags("app")
    registry.get_commit("app", "1")
    registry.get_digest("app", "1")
    assert len(fake.token_requests) == 1
    assert fake.challenged == 1  # only the very first request went without a token

    registry.retag("app", "1", "stage")  # PUT needs push: one more token, for pull,push
    assert (len(fake.token_requests), fake.challenged) == (2, 2)
    registry.retag("app", "1", "prod")  # the pull,push token goes up front for the PUT
    registry.get_digest("app", "prod")
    assert (len(fake.token_requests), fake.challenged) == (2, 2)


def test_a_revoked_token_is_fetched_again(make_registry, env_credentials):
    fake = make_registry()
    digest = fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)
    registry.get_digest("app", "1")

    fake.revoke_tokens()

    assert registry.get_digest("app", "1") == digest
    assert len(fake.token_requests) == 2


def test_an_expired_token_is_not_sent(make_registry, env_credentials, monkeypatch):
    import time
    from types import SimpleNamespace

    import mvp_tasks.image.registry as registry_module

    fake = make_registry()  # tokens live expires_in=300 s (the fake server never expires them)
    digest = fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)
    registry.get_digest("app", "1")

    later = time.monotonic() + 301
    monkeypatch.setattr(registry_module, "time", SimpleNamespace(monotonic=lambda: later))

    assert registry.get_digest("app", "1") == digest
    assert (len(fake.token_requests), fake.challenged) == (2, 2)


def test_wrong_password_is_one_line_without_the_password(make_registry, clean_env, monkeypatch):
    fake = make_registry()
    fake.add_image("app", "1")
    monkeypatch.setenv("MVP_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MVP_REGISTRY_PASSWORD", PASSWORD + "-wrong")
    registry = OciRegistry(fake.host, timeout=5)

    with pytest.raises(BuildError) as caught:
        registry.get_digest("app", "1")

    text = assert_one_line_without_password(caught.value)
    assert PASSWORD + "-wrong" not in text
    assert text == (f"registry {fake.host} refused the credentials for app (HTTP 401); "
                    f"set MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD or run docker login {fake.host}")
    assert len(fake.token_requests) == 1  # no retry loop


def test_a_token_without_push_rights_is_refused_in_one_line(make_registry, env_credentials):
    fake = make_registry()
    fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)
    fake.pull_only = True  # the account may read, not write: the PUT's 401 persists after auth

    with pytest.raises(BuildError) as caught:
        registry.retag("app", "1", "stage")

    assert "refused the credentials for app (HTTP 401)" in assert_one_line_without_password(caught.value)
    assert fake.tags("app") == ["1"]


def test_forbidden_is_one_clear_line(make_registry, env_credentials):
    fake = make_registry()
    fake.add_image("secret-app", "1")
    fake.forbidden.add("secret-app")

    with pytest.raises(BuildError) as caught:
        OciRegistry(fake.host, timeout=5).get_digest("secret-app", "1")

    text = assert_one_line_without_password(caught.value)
    assert text.startswith(f"registry {fake.host} denied access to secret-app (HTTP 403)")
    assert f"docker login {fake.host}" in text


def test_half_set_environment_is_an_error(make_registry, clean_env, monkeypatch):
    fake = make_registry()
    monkeypatch.setenv("MVP_REGISTRY_USERNAME", USER)

    with pytest.raises(BuildError, match="MVP_REGISTRY_USERNAME is set but MVP_REGISTRY_PASSWORD is not"):
        OciRegistry(fake.host, timeout=5).get_digest("app", "1")


# --- anonymous access ------------------------------------------------------------------------------


def test_anonymous_token_for_a_public_image(make_registry, clean_env):
    fake = make_registry(anonymous=True)
    digest = fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)

    assert registry.get_digest("app", "1") == digest
    assert registry.list_tags("app") == ["1"]
    assert registry.get_commit("app", "1") == COMMIT
    assert [r["user"] for r in fake.token_requests] == [None]

    # Pushing needs credentials: the anonymous token has pull only.
    with pytest.raises(BuildError) as caught:
        registry.retag("app", "1", "stage")
    assert str(caught.value).startswith(f"registry {fake.host} requires credentials for app (HTTP 401); "
                                        "set MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD")


def test_no_credentials_and_no_anonymous_access(make_registry, clean_env):
    fake = make_registry(anonymous=False)
    fake.add_image("app", "1")

    with pytest.raises(BuildError) as caught:
        OciRegistry(fake.host, timeout=5).list_tags("app")

    assert str(caught.value) == (f"registry {fake.host} requires credentials for app (HTTP 401); "
                                 f"set MVP_REGISTRY_USERNAME/MVP_REGISTRY_PASSWORD or run docker login {fake.host}")


# --- Basic challenges ------------------------------------------------------------------------------


def test_basic_challenge_registry(make_registry, env_credentials):
    fake = make_registry(mode="basic")
    digest = fake.add_image("app", "1")
    registry = OciRegistry(fake.host, timeout=5)

    assert registry.get_digest("app", "1") == digest
    assert registry.list_tags("app") == ["1"]
    assert registry.retag("app", "1", "stage") == digest
    assert registry.get_commit("app", "stage") == COMMIT
    assert fake.tags("app") == ["1", "stage"]
    assert fake.token_requests == []
    assert fake.challenged == 1  # challenged once, then the credentials went up front
    assert fake.storage_auth == [None]


def test_basic_challenge_with_a_wrong_password(make_registry, clean_env, monkeypatch):
    fake = make_registry(mode="basic")
    fake.add_image("app", "1")
    monkeypatch.setenv("MVP_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("MVP_REGISTRY_PASSWORD", "not-" + PASSWORD)

    with pytest.raises(BuildError) as caught:
        OciRegistry(fake.host, timeout=5).get_digest("app", "1")

    text = assert_one_line_without_password(caught.value)
    assert "not-" + PASSWORD not in text
    assert text.startswith(f"registry {fake.host} refused the credentials for app (HTTP 401)")
    assert sum(1 for _, path, _ in fake.requests if path.startswith("/v2/")) == 2  # retried once only


def test_basic_challenge_without_credentials(make_registry, clean_env):
    fake = make_registry(mode="basic")
    fake.add_image("app", "1")

    with pytest.raises(BuildError, match=r"requires credentials for app \(HTTP 401\)"):
        OciRegistry(fake.host, timeout=5).get_digest("app", "1")
    assert len(fake.requests) == 1


# --- credentials from docker's config.json ---------------------------------------------------------


@pytest.mark.parametrize("key", ["{host}", "http://{host}", "https://{host}/v2/"])
def test_credentials_from_docker_config(make_registry, clean_env, key):
    fake = make_registry()
    digest = fake.add_image("app", "1")
    write_docker_config(clean_env, {"other.example.com": {"auth": b64("someone:else")},
                                    key.format(host=fake.host): {"auth": b64(f"{USER}:{PASSWORD}")}})
    registry = OciRegistry(fake.host, timeout=5)

    assert registry.get_digest("app", "1") == digest
    assert registry.retag("app", "1", "stage") == digest
    assert [r["user"] for r in fake.token_requests] == [USER, USER]


def test_environment_wins_over_docker_config(make_registry, env_credentials, clean_env):
    fake = make_registry()
    digest = fake.add_image("app", "1")
    write_docker_config(clean_env, {fake.host: {"auth": b64(f"{USER}:wrong")}})

    assert OciRegistry(fake.host, timeout=5).get_digest("app", "1") == digest


def test_docker_config_with_a_wrong_password(make_registry, clean_env):
    fake = make_registry()
    fake.add_image("app", "1")
    write_docker_config(clean_env, {fake.host: {"auth": b64(f"{USER}:wrong-{PASSWORD}")}})

    with pytest.raises(BuildError) as caught:
        OciRegistry(fake.host, timeout=5).get_digest("app", "1")

    assert str(caught.value).startswith(f"registry {fake.host} refused the credentials for app (HTTP 401)")
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("config", [
    {"auths": {"{host}": {}}, "credsStore": "desktop"},
    {"auths": {}, "credHelpers": {"{host}": "pass"}},
    {"auths": {"{host}": {"auth": "%%% not base64"}}},
    {"auths": {"{host}": {"auth": b64("no-colon")}}},
    "not json at all",
])
def test_unusable_docker_config_means_anonymous(make_registry, clean_env, config):
    fake = make_registry(anonymous=True)
    digest = fake.add_image("app", "1")
    text = config if isinstance(config, str) else json.dumps(config)
    (clean_env / "config.json").write_text(text.replace("{host}", fake.host))

    assert OciRegistry(fake.host, timeout=5).get_digest("app", "1") == digest
    assert [r["user"] for r in fake.token_requests] == [None]


# --- realm and proxies -----------------------------------------------------------------------------


def test_loopback_requests_bypass_proxies(make_registry, env_credentials, monkeypatch):
    fake = make_registry()
    digest = fake.add_image("app", "1")
    dead_proxy = "http://127.0.0.1:9"  # discard port: nothing answers there
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, dead_proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)

    assert OciRegistry(fake.host, timeout=5).get_digest("app", "1") == digest
    assert len(fake.token_requests) == 1


def realm_registry(realm: str) -> tuple[OciRegistry, list[tuple[str, str]]]:
    """An OciRegistry whose sends are recorded, not made: the registry challenges with `realm`,
    the token service answers a token."""
    registry = OciRegistry("registry.example.com", timeout=5)
    sent: list[tuple[str, str]] = []

    class Headers(dict):
        def get_all(self, name, default=None):
            return [self[name]] if name in self else default

    def fake_send(method, url, body=None, headers=None, authorization="", what=""):
        sent.append((url, authorization))
        if url.startswith("https://registry.example.com/v2/"):
            if authorization == "Bearer t0k3n":
                return 200, Headers({"Docker-Content-Digest": "sha256:" + "0" * 64}), b""
            return 401, Headers({"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'}), b""
        return 200, Headers(), b'{"token": "t0k3n"}'

    registry._send = fake_send
    return registry, sent


def test_plain_http_realm_is_upgraded_to_https(env_credentials):
    registry, sent = realm_registry("http://auth.example.com/token?account=x")

    assert registry.get_digest("app", "1") == "sha256:" + "0" * 64
    token_url, authorization = sent[1]
    assert token_url == ("https://auth.example.com/token?account=x&service=svc&scope="
                         "repository%3Aapp%3Apull%2Cpush")  # no scope in the challenge: pull,push
    assert authorization == "Basic " + b64(f"{USER}:{PASSWORD}")
    assert sent[2] == ("https://registry.example.com/v2/app/manifests/1", "Bearer t0k3n")


@pytest.mark.parametrize("realm", ["file:///etc/passwd", "ftp://auth.example.com/token", "token"])
def test_non_http_realm_is_refused(env_credentials, realm):
    registry, sent = realm_registry(realm)

    with pytest.raises(BuildError, match="not an HTTP"):
        registry.get_digest("app", "1")
    assert len(sent) == 1


def test_challenge_parsing():
    assert parse_challenges(['Bearer realm="https://a/token",service="reg",scope="repository:x/y:pull,push"',
                             'Basic realm="say \\"hi\\""', 'Bearer realm=r, error="insufficient_scope"']) == [
        ("bearer", {"realm": "https://a/token", "service": "reg", "scope": "repository:x/y:pull,push"}),
        ("basic", {"realm": 'say "hi"'}),
        ("bearer", {"realm": "r", "error": "insufficient_scope"}),
    ]


# --- docker login ----------------------------------------------------------------------------------


class FakeDocker:
    def __init__(self):
        self.logins: list[tuple[str, str, str]] = []

    def login(self, registry: str, username: str, password: str) -> None:
        self.logins.append((registry, username, password))


def test_login_with_env_credentials(env_credentials):
    docker = FakeDocker()

    OciRegistry("registry.example.com/studio").login(docker)

    assert docker.logins == [("registry.example.com", USER, PASSWORD)]


def test_login_does_nothing_without_env_credentials(clean_env):
    write_docker_config(clean_env, {"registry.example.com": {"auth": b64(f"{USER}:{PASSWORD}")}})
    docker = FakeDocker()

    OciRegistry("registry.example.com").login(docker)

    assert docker.logins == []


def test_login_puts_the_password_on_stdin(env_credentials):
    calls: list[tuple[str, dict]] = []

    class Context:
        def run(self, command, **kwargs):
            calls.append((command, kwargs))
            return Result(command=command, exited=0)

    OciRegistry("127.0.0.1:5000").login(Docker(Runner(Context())))

    [(command, kwargs)] = calls
    assert command == f"docker login --username {USER} --password-stdin 127.0.0.1:5000"
    assert PASSWORD not in command
    assert kwargs["in_stream"].getvalue() == PASSWORD
