"""The deploy role's policy (docs/deploy-role-policy.json) against the calls a run really made:
a loopback proxy in front of moto records each call as `service:Action`, the service read from
the request's SigV4 credential scope, and `denied()` lists those no Allow statement covers."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

POLICY = Path(__file__).resolve().parents[2] / "docs" / "deploy-role-policy.json"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def make_proxy(base, upstream: str):
    """A `base` (test_lifecycle's RecordingProxy) whose calls are `service:Action`."""

    class IamProxy(base):
        @staticmethod
        def action(headers, path: str, body: bytes) -> str:
            match = SCOPE.search(headers.get("Authorization", ""))
            service = match.group(1) if match else "?"
            return f"{service}:{base.action(headers, path, body)}"

    return IamProxy(upstream)


def allowed_actions(policy: dict | None = None) -> list[str]:
    policy = policy or json.loads(POLICY.read_text())
    actions = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        given = statement["Action"]
        actions += [given] if isinstance(given, str) else given
    return actions


# API calls IAM authorizes as the actions inside them, not by their own name.
AUTHORIZED_AS = {"dynamodb:TransactWriteItems": ("dynamodb:PutItem", "dynamodb:DeleteItem")}


def denied(calls: list[str], policy: dict | None = None) -> list[str]:
    patterns = [a.lower() for a in allowed_actions(policy)]

    def allowed(action: str) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), p) for p in patterns)

    return sorted({c for c in calls if not all(allowed(a) for a in AUTHORIZED_AS.get(c, (c,)))})
