"""`image.ecr.EcrRegistry` against a real moto server over HTTP on loopback (in-process calls).

moto computes image digests wrongly, so manifests are put with `imageDigest=sha256(manifest)`, as
ECR itself would compute it."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest
from invoke import MockContext, Result

from mvp_tasks.image.ecr import LIFECYCLE_POLICY, EcrRegistry
from mvp_tasks.image.registry import RepositoryChanges
from mvp_tasks.image.docker import Docker
from mvp_tasks.image.runner import Runner

REPO = "museum-adventure"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def ecr(aws):
    return aws.client("ecr")


def manifest_json() -> str:
    layer = "sha256:" + hashlib.sha256(b"layer").hexdigest()
    config = "sha256:" + hashlib.sha256(b"config").hexdigest()
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 6, "digest": config},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 5, "digest": layer}],
    }, indent=3)


def put_manifest(ecr, tag: str) -> str:
    manifest = manifest_json()
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag=tag, imageDigest=digest,
                  imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json")
    return digest


def ensure(registry: EcrRegistry, repository: str = REPO) -> list[str]:
    """Plan the repository's changes, apply exactly them, and say what they were (as a push does)."""
    changes = registry.get_repository_changes(repository)
    registry.apply_repository_changes(changes)
    return changes.lines()


def described_digest(ecr, tag: str) -> str:
    return ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": tag}])["imageDetails"][0]["imageDigest"]


def test_a_missing_repository_is_created_with_scan_on_push_and_lifecycle_policy(ecr):
    registry = EcrRegistry(ecr)

    changes = ensure(registry)

    assert len(changes) == 1 and changes[0].startswith(f"+ ECR repository {REPO}"), changes
    repo = ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName=REPO)["lifecyclePolicyText"])
    assert policy == LIFECYCLE_POLICY
    rule = policy["rules"][0]
    assert rule["selection"]["tagStatus"] == "untagged" and rule["action"]["type"] == "expire"

    # Converged: a second run changes nothing.
    assert ensure(EcrRegistry(ecr)) == []


def test_reading_the_changes_creates_nothing(ecr):
    changes = EcrRegistry(ecr).get_repository_changes(REPO).lines()

    assert changes and changes[0].startswith("+ ECR repository")
    assert ecr.describe_repositories()["repositories"] == []


def test_scan_on_push_and_a_missing_policy_are_repaired(ecr):
    ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": False})

    changes = ensure(EcrRegistry(ecr))

    assert len(changes) == 2, changes
    repo = ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=REPO)["lifecyclePolicyText"]) == LIFECYCLE_POLICY
    assert ensure(EcrRegistry(ecr)) == []


def test_planned_changes_are_applied_exactly_and_nothing_more(ecr):
    ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": False})
    registry = EcrRegistry(ecr)
    planned = registry.get_repository_changes(REPO)
    assert (planned.create, planned.scan_on_push, planned.lifecycle_policy) == (False, True, True)
    assert ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0][
        "imageScanningConfiguration"]["scanOnPush"] is False  # planning changed nothing

    # Applied as planned, even if the repository reads differently by now: only scanning is applied.
    registry.apply_repository_changes(RepositoryChanges(REPO, scan_on_push=True))

    assert ecr.describe_repositories(repositoryNames=[REPO])["repositories"][0][
        "imageScanningConfiguration"]["scanOnPush"] is True
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName=REPO)
    assert registry.get_repository_changes(REPO) == replace(planned, scan_on_push=False)


def test_an_adopted_repository_keeps_its_own_lifecycle_policy(ecr):
    ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": True})
    own = {"rules": [{"rulePriority": 1, "description": "keep 5 images",
                      "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
                      "action": {"type": "expire"}}]}
    ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=json.dumps(own))
    registry = EcrRegistry(ecr)

    assert not registry.get_repository_changes(REPO)
    assert ensure(registry) == []
    assert json.loads(ecr.get_lifecycle_policy(repositoryName=REPO)["lifecyclePolicyText"]) == own


def test_retag_keeps_the_digest_and_missing_tags_have_none(ecr):
    registry = EcrRegistry(ecr)
    ensure(registry)
    digest = put_manifest(ecr, COMMIT)
    assert registry.get_digest(REPO, COMMIT) == digest

    returned = registry.retag(REPO, COMMIT, "stage")

    assert returned == digest
    assert described_digest(ecr, "stage") == digest
    assert described_digest(ecr, COMMIT) == digest
    assert registry.get_digest(REPO, "stage") == digest
    assert registry.list_tags(REPO) == sorted([COMMIT, "stage"])
    # Moving a tag onto the image it already names is a no-op, not an error.
    assert registry.retag(REPO, COMMIT, "stage") == digest
    assert described_digest(ecr, "stage") == digest


def test_get_digest_is_none_for_a_missing_tag_or_repository(ecr):
    registry = EcrRegistry(ecr)
    assert registry.get_digest(REPO, "stage") is None
    assert registry.list_tags(REPO) == []
    ensure(registry)
    assert registry.get_digest(REPO, "nosuch") is None


def test_login_passes_the_password_on_stdin_only(ecr):
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = data["proxyEndpoint"].split("://", 1)[-1].rstrip("/")
    assert password
    context = MockContext(run=Result(stdout="Login Succeeded\n"))
    registry = EcrRegistry(ecr)

    registry.login(Docker(Runner(context)))

    assert registry.ref(REPO, "stage") == f"{host}/{REPO}:stage"
    assert context.run.call_count == 1
    command = context.run.call_args.args[0]
    kwargs = context.run.call_args.kwargs
    assert command == f"docker login --username {user} --password-stdin {host}"
    assert password not in command
    assert kwargs["in_stream"].getvalue() == password
    assert password not in json.dumps(kwargs.get("env") or {})
