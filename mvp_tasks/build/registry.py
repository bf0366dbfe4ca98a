"""Image registries behind one small interface: Amazon ECR (`aws.images.EcrRegistry`) and any OCI
distribution registry over its HTTP API (`OciRegistry`, used by the sandbox and the tests).

Moving a tag is done server-side in both: the manifest under one tag is put again under another,
so there is no rebuild and no layer download.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Protocol

from ..errors import BuildError

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$")


def _json(body: bytes, host: str) -> dict:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise BuildError(f"registry {host} answered with something that is not JSON: {body[:80]!r}") from None
    return data if isinstance(data, dict) else {}


def manifest_digest(manifest: bytes) -> str:
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


class Registry(Protocol):
    host: str

    def describe(self) -> str: ...

    def ref(self, repository: str, tag: str) -> str: ...

    def ensure_repository(self, repository: str, check: bool = False) -> list[str]: ...

    def get_digest(self, repository: str, tag: str) -> str | None: ...

    def list_tags(self, repository: str) -> list[str]: ...

    def retag(self, repository: str, source_tag: str, target_tag: str) -> str: ...

    def get_commit(self, repository: str, tag: str) -> str: ...

    def login(self, docker) -> None: ...


class OciRegistry:
    """A registry speaking the OCI distribution API (`/v2/`), anonymously."""

    def __init__(self, host: str, timeout: float = 15.0):
        self.host = host.rstrip("/")
        self.timeout = timeout
        hostport = self.host.split("/", 1)[0]
        # Plain HTTP only for loopback registries (the sandbox); anything else is HTTPS.
        self.scheme = "http" if LOOPBACK.match(hostport) else "https"
        self.base = f"{self.scheme}://{hostport}"
        self.prefix = self.host.split("/", 1)[1] + "/" if "/" in self.host else ""

    def describe(self) -> str:
        return f"registry {self.host}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def _url(self, repository: str, kind: str, ref: str = "") -> str:
        return f"{self.base}/v2/{self.prefix}{repository}/{kind}/{ref}".rstrip("/")

    def _request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        # A loopback registry is never reached through a proxy (HTTP_PROXY would otherwise apply).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if self.scheme == "http" \
            else urllib.request.build_opener()
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BuildError(f"registry {self.host} cannot be reached: {reason}",
                             "check mvp.registry, or start the sandbox's registry with `inv sandbox.up`") from None

    def ensure_repository(self, repository: str, check: bool = False) -> list[str]:
        # OCI registries create a repository on its first push.
        return []

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
        return None
