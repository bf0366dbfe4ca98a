"""Amazon ECR as an image registry, through boto3 (the `Registry` interface of `image.registry`)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

from ..errors import AwsError, BuildError
from ..aws.clients import aws_errors, error_code
from .registry import RepositoryChanges

MANIFEST_TYPES = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
]
UNTAGGED_DAYS = 14
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": f"expire untagged images {UNTAGGED_DAYS} days after push",
            "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                          "countNumber": UNTAGGED_DAYS},
            "action": {"type": "expire"},
        }
    ]
}


class EcrRegistry:
    """ECR through boto3. `client` is an ECR client, or a function returning one: with
    `AwsClients`, the run's one ECR client, made on first use."""

    def __init__(self, client):
        self._client = client
        self._host = ""
        self._token: tuple[str, str] | None = None
        import threading

        self._lock = threading.Lock()

    @property
    def client(self):
        return self._client() if callable(self._client) and not hasattr(self._client, "describe_images") else self._client

    @property
    def host(self) -> str:
        if not self._host:
            self._authorize()
        return self._host

    def _authorize(self) -> tuple[str, str]:
        with self._lock:
            return self._authorize_locked()

    def _authorize_locked(self) -> tuple[str, str]:
        if self._token is None:
            with aws_errors():
                data = self.client.get_authorization_token()["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            self._host = data["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
            self._token = (user, password)
        return self._token

    def describe(self) -> str:
        return f"ECR {self.host}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def get_repository_changes(self, repository: str) -> RepositoryChanges:
        """What the repository needs before a push, read only: to be made (scan on push, the
        tool's lifecycle policy), scanning turned on, or a lifecycle policy where it has none.
        A policy the studio set (an adopted repository) is kept as it is."""
        changes = RepositoryChanges(repository, label="ECR repository",
                                    policy=f"untagged images expire after {UNTAGGED_DAYS} days")
        try:
            with aws_errors():
                repo = self.client.describe_repositories(repositoryNames=[repository])["repositories"][0]
        except AwsError as exc:
            if error_code(exc.__cause__) != "RepositoryNotFoundException":
                raise
            return replace(changes, create=True)
        try:
            with aws_errors():
                self.client.get_lifecycle_policy(repositoryName=repository)
            has_policy = True
        except AwsError as exc:
            if error_code(exc.__cause__) != "LifecyclePolicyNotFoundException":
                raise
            has_policy = False
        return replace(changes, scan_on_push=not repo.get("imageScanningConfiguration", {}).get("scanOnPush"),
                       lifecycle_policy=not has_policy)

    def apply_repository_changes(self, changes: RepositoryChanges) -> None:
        """Make exactly the `changes` planning read (`get_repository_changes`), nothing else."""
        repository = changes.repository
        with aws_errors():
            if changes.create:
                self.client.create_repository(
                    repositoryName=repository,
                    imageScanningConfiguration={"scanOnPush": True},
                    imageTagMutability="MUTABLE",
                )
            elif changes.scan_on_push:
                self.client.put_image_scanning_configuration(
                    repositoryName=repository, imageScanningConfiguration={"scanOnPush": True})
            if changes.create or changes.lifecycle_policy:
                self.client.put_lifecycle_policy(repositoryName=repository,
                                                 lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))

    def _describe_image(self, repository: str, tag: str) -> dict | None:
        try:
            with aws_errors():
                details = self.client.describe_images(repositoryName=repository,
                                                      imageIds=[{"imageTag": tag}])["imageDetails"]
        except AwsError as exc:
            if error_code(exc.__cause__) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
        return details[0] if details else None

    def get_digest(self, repository: str, tag: str) -> str | None:
        image = self._describe_image(repository, tag)
        return image["imageDigest"] if image else None

    def list_tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        try:
            with aws_errors():
                for page in self.client.get_paginator("list_images").paginate(
                        repositoryName=repository, filter={"tagStatus": "TAGGED"}):
                    tags.extend(i["imageTag"] for i in page.get("imageIds", []) if i.get("imageTag"))
        except AwsError as exc:
            if error_code(exc.__cause__) == "RepositoryNotFoundException":
                return []
            raise
        return sorted(set(tags))

    def retag(self, repository: str, source_tag: str, target_tag: str) -> str:
        """Put the manifest of `source_tag` (a tag, or a `sha256:` digest) under `target_tag`."""
        import hashlib

        source = {"imageDigest": source_tag} if source_tag.startswith("sha256:") else {"imageTag": source_tag}
        with aws_errors():
            images = self.client.batch_get_image(repositoryName=repository, imageIds=[source],
                                                 acceptedMediaTypes=MANIFEST_TYPES)["images"]
        if not images:
            raise BuildError(f"image {repository}:{source_tag} does not exist in ECR; nothing to retag")
        manifest = images[0]["imageManifest"]
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        kwargs = {"repositoryName": repository, "imageManifest": manifest, "imageTag": target_tag,
                  "imageDigest": images[0].get("imageId", {}).get("imageDigest") or digest}
        if images[0].get("imageManifestMediaType"):
            kwargs["imageManifestMediaType"] = images[0]["imageManifestMediaType"]
        try:
            with aws_errors():
                self.client.put_image(**kwargs)
        except AwsError as exc:
            # The tag already names this very manifest: nothing to move.
            if error_code(exc.__cause__) != "ImageAlreadyExistsException":
                raise
        return kwargs["imageDigest"]

    def get_commit(self, repository: str, tag: str) -> str:
        """The commit tag (40 hex digits) that names the same image as `tag`."""
        import re

        image = self._describe_image(repository, tag)
        tags = image.get("imageTags", []) if image else []
        return next((t for t in tags if re.fullmatch(r"[0-9a-f]{40}", t)), "")

    def login(self, docker) -> None:
        user, password = self._authorize()
        docker.login(self.host, user, password)
