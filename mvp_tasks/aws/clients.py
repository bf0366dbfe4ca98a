"""One lazy factory for boto3 clients, and the translation of AWS errors into `MvpError`s.

boto3 is imported on first use, never at `inv --list` time (it costs ~0.3 s).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import AwsError, CredentialsError, EndpointError

# Error codes AWS answers with when credentials are expired, revoked or simply wrong.
CREDENTIAL_CODES = {
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "AuthFailure",
    "TokenRefreshRequired",
}
CREDENTIAL_HINT = (
    "refresh your credentials (e.g. `aws sso login`, or set AWS_PROFILE / AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), or start the local sandbox with `inv sandbox.up`"
)


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: a region, an optional profile and an optional endpoint (emulator)."""

    region: str
    profile: str = ""
    endpoint_url: str = ""
    # Fixed dummy credentials for the local sandbox, so real ones never reach the emulator.
    sandbox: bool = False

    def describe(self) -> str:
        if self.sandbox:
            return f"sandbox {self.endpoint_url} ({self.region})"
        if self.endpoint_url:
            return f"{self.endpoint_url} ({self.region})"
        return f"AWS {self.region}" + (f", profile {self.profile}" if self.profile else "")


# Connections kept per client: targets at work (at most 64) and those waiting on AWS call at once.
MAX_POOL = 128


class AwsClients:
    """Creates each boto3 client once per run, on first use, with standard retries and bounded
    timeouts, and hands the same client to every thread.

    boto3's rule: a Session is not thread-safe, a client made from it is ("once you've created a
    client ... those calls are thread safe", boto/boto3#1592; nothing here registers event hooks on
    a client, which would void that). So the one session is used only under a lock, to make the
    run's clients, and the clients are shared. A client per thread cost a session and its clients
    per thread: ~0.1 s of CPU each, which twenty targets on two cores paid twenty times over.
    Each client's connection pool holds as many connections as targets can be at work at once."""

    def __init__(self, target: AwsTarget, max_attempts: int = 5):
        import threading

        self.target = target
        self.max_attempts = max_attempts
        self._lock = threading.RLock()
        self._session = None
        self._clients: dict[str, Any] = {}

    @property
    def session(self):
        with self._lock:
            if self._session is None:
                import boto3

                kwargs: dict[str, Any] = {"region_name": self.target.region or None}
                if self.target.sandbox:
                    kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
                elif self.target.profile:
                    kwargs["profile_name"] = self.target.profile
                try:
                    self._session = boto3.Session(**kwargs)
                except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
                    mapped = translate(exc, profile=self.target.profile)
                    if mapped is not None:
                        raise mapped from None
                    raise CredentialsError(f"cannot open AWS profile {describe_profile(self.target.profile)}: {exc}",
                                           "check ~/.aws/config") from None
            return self._session

    def client(self, service: str):
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                config = Config(
                    retries={"mode": "standard", "max_attempts": self.max_attempts},
                    connect_timeout=5,
                    read_timeout=60,
                    user_agent_extra="mvp-tasks",
                    max_pool_connections=MAX_POOL,
                )
                region = self.target.region or self.session.region_name
                if not region:
                    raise AwsError("no AWS region set", "set mvp.region in invoke.yaml or export AWS_REGION")
                self._clients[service] = self.session.client(
                    service,
                    region_name=region,
                    endpoint_url=self.target.endpoint_url or None,
                    config=config,
                )
            return self._clients[service]

    @property
    def cloudformation(self):
        return self.client("cloudformation")

    @property
    def ecs(self):
        return self.client("ecs")

    @property
    def ecr(self):
        return self.client("ecr")

    @property
    def logs(self):
        return self.client("logs")

    @property
    def sts(self):
        return self.client("sts")

    @property
    def dynamodb(self):
        return self.client("dynamodb")

    @property
    def ssm(self):
        return self.client("ssm")

    def get_caller(self) -> str:
        """Who is acting, for the deploy history: the caller identity's ARN."""
        with aws_errors(self.target.endpoint_url):
            return self.sts.get_caller_identity().get("Arn", "unknown")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Message", "") or str(exc)


def describe_profile(configured: str = "") -> str:
    """'NAME' (from mvp.profile | AWS_PROFILE | AWS_DEFAULT_PROFILE): the profile boto3 opens."""
    import os

    for source, value in (("mvp.profile", configured), ("AWS_PROFILE", os.environ.get("AWS_PROFILE", "")),
                          ("AWS_DEFAULT_PROFILE", os.environ.get("AWS_DEFAULT_PROFILE", ""))):
        if value:
            return f"'{value}' (from {source})"
    return "'default'"


def _profile_not_found(exc: BaseException, configured: str) -> CredentialsError:
    name = getattr(exc, "kwargs", {}).get("profile") or configured or "default"
    source = "mvp.profile in invoke.yaml" if configured else "AWS_PROFILE"
    return CredentialsError(
        f"AWS profile {describe_profile(configured)} is not in the AWS config files",
        f"create it with `aws configure --profile {name}` or `aws configure sso`, or change {source}",
    )


def translate(exc: BaseException, endpoint: str = "", profile: str = "") -> AwsError | None:
    """A botocore exception as an `AwsError` with a hint, or None when it is not one we know."""
    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CredentialsError("no AWS credentials found", CREDENTIAL_HINT)
    if isinstance(exc, (bx.TokenRetrievalError, bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError)):
        return CredentialsError(f"AWS credentials have expired: {exc}", CREDENTIAL_HINT)
    if isinstance(exc, bx.ProfileNotFound):
        return _profile_not_found(exc, profile)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        where = getattr(exc, "kwargs", {}).get("endpoint_url") or endpoint or "the AWS endpoint"
        return EndpointError(
            f"cannot reach {where}",
            "check AWS_ENDPOINT_URL and your network; for the local sandbox run `inv sandbox.up`",
        )
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        if code in CREDENTIAL_CODES:
            return CredentialsError(f"AWS refused the credentials ({code}: {error_message(exc)})", CREDENTIAL_HINT)
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return AwsError(f"access denied: {error_message(exc)}", "the caller's IAM policy must allow this action")
        return AwsError(f"{code}: {error_message(exc)}")
    if isinstance(exc, ResponseParserError):
        return AwsError(f"the AWS endpoint gave an unreadable answer: {str(exc).splitlines()[0]}")
    if isinstance(exc, bx.BotoCoreError):
        return AwsError(str(exc))
    return None


@contextlib.contextmanager
def aws_errors(endpoint: str = "") -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into `AwsError`s."""
    try:
        yield
    except AwsError:
        raise
    except Exception as exc:
        mapped = translate(exc, endpoint)
        if mapped is None:
            raise
        raise mapped from exc
