"""CloudWatch Logs reads: the events of a log group, or of one of its streams.

`Logs(client)` takes an injected boto3 CloudWatch Logs client; it neither prints nor reads config.
Failures are raised as `MvpError`s (through `aws_errors`), a missing log group as one that says so.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ..errors import AwsError
from .clients import aws_errors, error_code


class Logs:
    def __init__(self, client) -> None:
        self.client = client

    def filter_events(self, group: str, start_ms: int, end_ms: int | None = None) -> Iterator[dict]:
        """Every event of every stream of `group` from `start_ms` (epoch milliseconds) on, page by
        page (FilterLogEvents), each as the API gives it (eventId, timestamp, message, logStreamName)."""
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
        if end_ms is not None:
            kwargs["endTime"] = end_ms
        with _errors(group):
            for page in self.client.get_paginator("filter_log_events").paginate(**kwargs):
                yield from page.get("events", [])

    def get_events(self, group: str, stream: str, start_ms: int) -> Iterator[dict]:
        """The events of one stream from `start_ms` on, oldest first (GetLogEvents, followed by its
        forward token until the token stops changing: that is how the API says "no more")."""
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startTime": start_ms,
                                  "startFromHead": True}
        with _errors(group):
            while True:
                page = self.client.get_log_events(**kwargs)
                yield from page.get("events", [])
                token = page.get("nextForwardToken")
                if not token or token == kwargs.get("nextToken"):
                    return
                kwargs["nextToken"] = token


@contextlib.contextmanager
def _errors(group: str) -> Iterator[None]:
    """`aws_errors`, with a log group that does not exist said in words (its code alone would read
    "ResourceNotFoundException: The specified log group does not exist.")."""
    with aws_errors():
        try:
            yield
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise AwsError(f"log group {group} does not exist",
                               "the app has logged nothing yet, or its template names another group") from None
            raise
