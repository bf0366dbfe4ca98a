"""Every `mvp.*` config default, in one place (cheap to import: `inv --list` loads it)."""

from typing import Any


class _Whole(int):
    """An int default that lets a malformed INVOKE_MVP_* value through as text.

    Invoke casts environment values with the default's own type (`int("soon")` would be a
    traceback before any task runs); passing the text on lets validation name the key instead.
    """

    def __new__(cls, value: Any = 0):
        try:
            return int.__new__(cls, value)
        except (TypeError, ValueError):
            return value


class _Number(float):
    """The same for float defaults."""

    def __new__(cls, value: Any = 0.0):
        try:
            return float.__new__(cls, value)
        except (TypeError, ValueError):
            return value

DEFAULTS: dict[str, Any] = {
    # Empty: fall back to AWS_REGION / AWS_DEFAULT_REGION / the profile's region.
    "region": "",
    # Empty: the standard credential chain (AWS_PROFILE is honoured by boto3 itself).
    "profile": "",
    # Empty: the account's ECR. Otherwise an OCI registry host such as 127.0.0.1:5000.
    "registry": "",
    "default_cluster": "stage",
    # Upper bound, in seconds, of every wait on CloudFormation or ECS.
    "wait_timeout": _Whole(1800),
    # Seconds between two polls while showing live progress.
    "poll_interval": _Number(5),
    # How many targets (apps x clusters, clusters) fleet tasks plan and apply side by side.
    "parallel": _Whole(4),
    # A rollout stopped by Ctrl-C, SIGTERM or the wait timeout is rolled back at once (as a failed
    # one is) instead of being offered: what --yes does too.
    "rollback_on_interrupt": False,
    "build": {
        # user@host[:port] of a build host reached over SSH; empty builds locally.
        "host": "",
        "platform": "linux/amd64",
        # The container CLI: docker, or podman, or a path.
        "docker": "docker",
        # The engine the CLI talks to (`unix:///...`, `tcp://...`); empty: the CLI's default / DOCKER_HOST.
        "docker_host": "",
        # `docker build --network` (engines without a bridge network need `host` for RUN steps).
        "network": "",
        # SSH private key for the build host; empty: the SSH agent and ~/.ssh defaults.
        "ssh_key": "",
        # A known_hosts file that vouches for the build host's SSH key, read before ~/.ssh/known_hosts
        # and /etc/ssh/ssh_known_hosts; a host in none of them is refused.
        "known_hosts": "",
    },
    "sandbox": {
        # Where the local sandbox keeps its state, relative to the repository root.
        "dir": ".sandbox",
        "port": _Whole(5100),
        "registry_port": _Whole(5000),
    },
    # The deploy store (history and locks of every cluster), see mvp_tasks/state/location.py.
    "state": {
        # The store's own stack, made by the first `cluster.up` in an account and region.
        "stack": "mvp-deploy-state",
        # A DynamoDB table of the studio's own naming; empty: the one the store's stack makes.
        "table": "",
        # Seconds a deploy lock is held without a heartbeat; a run renews it every third of that.
        "lease": _Whole(90),
        # The IAM role CloudFormation uses for the store's stack; empty: the default cluster's cfn_role.
        "cfn_role": "",
    },
    "rollout": {
        # A rollout fails once this many new tasks of its deployment have stopped with a failure
        # (before ECS's circuit breaker, which waits for at least 3).
        "failed_tasks": _Whole(2),
    },
    "clusters": {},
    "projects": {},
}

CLUSTER_DEFAULTS: dict[str, Any] = {
    "template": "infrastructure/fargate_cluster.yml",
    "protected": False,
    # The cluster whose image this one takes on `app.promote`; empty: nothing to promote from.
    "promote_from": "",
    # The image tag services in this cluster run; empty: the cluster's name.
    "tag": "",
    "parameters": {},
    # ARN of the IAM role CloudFormation acts as for this cluster's stacks and its apps' stacks
    # (docs/deploy-role.md); empty: CloudFormation acts with the caller's own permissions.
    "cfn_role": "",
}

PROJECT_DEFAULTS: dict[str, Any] = {
    "clusters": [],
    # Path of the app's template, relative to projects/<name>/.
    "template": "deploy.yml",
    "parameters": {},
    "build_args": {},
    # Image repository name; empty: the project's name.
    "repository": "",
    # Plain environment variables of the app's container ({KEY: value}, placeholders allowed).
    "environment": {},
    # Names of the container's secrets: SSM SecureStrings /mvp/<cluster>/<project>/<KEY>.
    "secrets": [],
    # CLUSTER: {parameters, environment, secrets} for that cluster only, over the values above.
    "per_cluster": {},
}
