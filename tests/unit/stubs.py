"""Shared pieces of the Stubber tests: offline boto3 clients and a clock that moves only on sleep."""

from __future__ import annotations

import boto3

REGION = "us-east-1"
AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS",
                 "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL_DYNAMODB")


def isolate_from_aws(monkeypatch) -> None:
    """Never read the developer's profile, files or endpoint: the Stubber answers every call."""
    for var in AWS_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


def make_client(service_name: str):
    # A fresh session (what boto3.client uses, minus the process-wide cache) so the env above applies.
    return boto3.session.Session().client(service_name, region_name=REGION,
                                          aws_access_key_id="x", aws_secret_access_key="x")


class FakeClock:
    """`time.monotonic` that only moves when the code under test sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
