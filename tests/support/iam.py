"""The deploy role's policy (docs/deploy-role-policy.json) against the calls a run really made, and
every policy of docs/deploy-role.md against the ways a role grants itself more.

`make_proxy`: a loopback proxy in front of moto records each call as a `Call` (`service:Action`,
the service read from the request's SigV4 credential scope, carrying the request's parameters).

`refusals(calls, policy)`: the requests IAM would refuse. A call is authorized as IAM does it:
its action on the resource its parameters name (a stack, a table, a parameter, a log group, a
repository, a service; `*` for a call that names none, such as ListStacks), with the condition
keys the request sets (`cloudformation:RoleArn`), and a call carrying `RoleARN` also needs
`iam:PassRole` on that role with `iam:PassedToService` = cloudformation.amazonaws.com. An Allow
statement grants only when its action, its resource and every condition match (an operator this
checker does not know never matches); a matching Deny refuses. A call whose resource this module
cannot derive (ECS describes, STS) is matched on its action alone.

`problems(policy)`: what lets a role grant itself more, whatever calls a run made: `iam:PassRole`
on any role or without `iam:PassedToService`; CreateRole / PutRolePolicy without a permissions
boundary condition, AttachRolePolicy without one on the policy or the boundary; actions that
rewrite a boundary, a policy version, a trust policy or a user's credentials; a delete on `*`
without a condition; `NotAction` / `NotResource` (not reasoned about here).
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Iterable

DOCS = Path(__file__).resolve().parents[2] / "docs"
POLICY = DOCS / "deploy-role-policy.json"
CFN_POLICY = DOCS / "cloudformation-role-policy.json"
BOUNDARY_POLICY = DOCS / "app-role-boundary-policy.json"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
ACCOUNT = "123456789012"  # moto's
CFN_SERVICE = "cloudformation.amazonaws.com"


class Call(str):
    """`service:Action`, with the request's parameters and region."""

    params: dict
    region: str

    def __new__(cls, name: str, params: dict | None = None, region: str = "us-east-1") -> "Call":
        call = super().__new__(cls, name)
        call.params = params or {}
        call.region = region
        return call


def _params(headers, path: str, body: bytes) -> dict:
    from urllib.parse import parse_qs, urlsplit

    if headers.get("X-Amz-Target"):  # JSON protocols
        try:
            return json.loads(body or b"{}")
        except ValueError:
            return {}
    query = parse_qs(body.decode("utf-8", "replace")) if body else parse_qs(urlsplit(path).query)
    return {k: v[0] for k, v in query.items()}


def make_proxy(base, upstream: str):
    """A `base` (test_lifecycle's RecordingProxy) whose calls are `Call`s."""

    class IamProxy(base):
        @staticmethod
        def action(headers, path: str, body: bytes) -> Call:
            match = SCOPE.search(headers.get("Authorization", ""))
            region, service = match.groups() if match else ("us-east-1", "?")
            return Call(f"{service}:{base.action(headers, path, body)}", _params(headers, path, body), region)

    return IamProxy(upstream)


def load(path: Path = POLICY) -> dict:
    return json.loads(path.read_text())


def _listed(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def allowed_actions(policy: dict | None = None) -> list[str]:
    policy = policy or load()
    return [a for s in policy["Statement"] if s["Effect"] == "Allow" for a in _listed(s.get("Action", []))]


# --- requests: what IAM authorizes for one call ---------------------------------------------------


def requests(call: Call) -> list[tuple[str, str | None, dict]]:
    """(action, resource or None when not derived, condition keys) for each authorization `call` needs."""
    service, action = call.split(":", 1)
    p, arn = call.params, f"{call.region}:{ACCOUNT}"
    if service == "cloudformation":
        name = p.get("StackName", "")
        resource = (name if name.startswith("arn:") else f"arn:aws:cloudformation:{arn}:stack/{name}/id") \
            if name else "*"
        out = [(call, resource, {"cloudformation:RoleArn": p["RoleARN"]} if "RoleARN" in p else {})]
        if "RoleARN" in p:
            out.append(("iam:PassRole", p["RoleARN"], {"iam:PassedToService": CFN_SERVICE}))
        return out
    if service == "dynamodb":
        if action == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem",
                     "ConditionCheck": "ConditionCheckItem"}
            return [(f"dynamodb:{kinds[kind]}", f"arn:aws:dynamodb:{arn}:table/{body['TableName']}", {})
                    for item in p.get("TransactItems", []) for kind, body in item.items()]
        table = p.get("TableName")
        return [(call, f"arn:aws:dynamodb:{arn}:table/{table}" if table else None, {})]
    if service == "ssm":
        names = [p["Name"]] if "Name" in p else p.get("Names", [])
        if not names:
            return [(call, "*" if action.startswith("Describe") else None, {})]
        return [(call, f"arn:aws:ssm:{arn}:parameter{'' if n.startswith('/') else '/'}{n}", {}) for n in names]
    if service == "logs":
        group = p.get("logGroupName") or p.get("logGroupIdentifier")
        return [(call, f"arn:aws:logs:{arn}:log-group:{group}:*" if group else None, {})]
    if service == "ecr":
        repository = p.get("repositoryName")
        return [(call, f"arn:aws:ecr:{arn}:repository/{repository}" if repository
                 else "*" if action == "GetAuthorizationToken" else None, {})]
    if service == "ecs" and action in ("UpdateService", "DescribeServices"):
        cluster = p.get("cluster", "default").rsplit("/", 1)[-1]
        services = [p["service"]] if "service" in p else p.get("services", [])
        return [(call, s if s.startswith("arn:") else f"arn:aws:ecs:{arn}:service/{cluster}/{s}", {})
                for s in services] or [(call, None, {})]
    return [(call, None, {})]


def _matches(patterns: Iterable[str], value: str, *, case: bool) -> bool:
    if case:
        return any(fnmatch.fnmatchcase(value, p) for p in patterns)
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)


def _condition_holds(condition: dict, context: dict) -> bool:
    for operator, keys in condition.items():
        if_exists = operator.endswith("IfExists")
        op = operator.removesuffix("IfExists")
        for key, values in keys.items():
            given = {k.lower(): v for k, v in context.items()}.get(key.lower())
            if given is None:
                if if_exists:
                    continue
                return False
            wanted = [str(v).replace("${aws:PrincipalAccount}", ACCOUNT) for v in _listed(values)]
            if op in ("StringEquals", "ArnEquals"):
                ok = given in wanted
            elif op in ("StringLike", "ArnLike"):
                ok = _matches(wanted, given, case=True)
            else:
                return False  # an operator not known here never grants
            if not ok:
                return False
    return True


def _statement_matches(statement: dict, action: str, resource: str | None, context: dict) -> bool:
    if not _matches(_listed(statement.get("Action", [])), action, case=False):
        return False
    if resource is not None and not _matches(_listed(statement.get("Resource", [])), resource, case=True):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def is_allowed(policy: dict, action: str, resource: str | None, context: dict | None = None) -> bool:
    context = context or {}
    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and _statement_matches(s, action, resource, context) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and _statement_matches(s, action, resource, context) for s in statements)


def refusals(calls: list, policy: dict | None = None) -> list[str]:
    """One line per refused authorization: `call: action on resource (conditions)`."""
    policy = policy or load()
    out = set()
    for call in calls:
        call = call if isinstance(call, Call) else Call(call)
        for action, resource, context in requests(call):
            if not is_allowed(policy, action, resource, context):
                keys = ", ".join(f"{k}={v}" for k, v in context.items())
                out.add(f"{call}: {action} on {resource or '(any resource)'}" + (f" ({keys})" if keys else ""))
    return sorted(out)


def denied(calls: list, policy: dict | None = None) -> list[str]:
    """The calls (`service:Action`) with at least one refused authorization."""
    return sorted({line.split(": ", 1)[0] for line in refusals(calls, policy)})


# --- problems: how a policy lets a role grant itself more ----------------------------------------

# Never to be allowed: each rewrites what some principal may do, or hands out credentials.
NEVER = ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:CreatePolicy",
         "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary", "iam:UpdateAssumeRolePolicy",
         "iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
         "iam:AttachUserPolicy", "iam:PutUserPolicy", "iam:AttachGroupPolicy", "iam:PutGroupPolicy",
         "iam:AddUserToGroup", "iam:PutUserPermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
         "sts:AssumeRole")
# Allowed only under a condition on one of these keys.
CONDITIONED = {
    "iam:CreateRole": ("iam:PermissionsBoundary",),
    "iam:PutRolePolicy": ("iam:PermissionsBoundary",),
    "iam:AttachRolePolicy": ("iam:PolicyARN", "iam:PermissionsBoundary"),
    "iam:CreateServiceLinkedRole": ("iam:AWSServiceName",),
    "iam:PassRole": ("iam:PassedToService",),
}
# A role no studio policy has any business passing: a resource pattern that matches it matches any role.
ANY_ROLE = (f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole", f"arn:aws:iam::{ACCOUNT}:role/x")


def _covers(patterns: list[str], action: str) -> bool:
    return _matches(patterns, action, case=False)


def _conditioned_on(statement: dict, keys: tuple[str, ...]) -> bool:
    """A condition that must hold: a positive operator (not Not*, not *IfExists, not Null) on one of `keys`."""
    wanted = {k.lower() for k in keys}
    for operator, block in statement.get("Condition", {}).items():
        if "Not" in operator or operator.endswith("IfExists") or operator == "Null":
            continue
        if any(key.lower() in wanted for key in block):
            return True
    return False


def _is_delete(action: str) -> bool:
    """A Delete* action, or a wildcard that covers some (`ec2:*`, `*`)."""
    service, _, name = action.partition(":") if ":" in action else ("ec2", "", action)
    return name.lower().startswith("delete") or _covers([action], f"{service}:DeleteAnything")


def problems(policy: dict) -> list[str]:
    out = []
    for n, statement in enumerate(policy["Statement"]):
        sid = statement.get("Sid") or f"statement {n}"
        for odd in ("NotAction", "NotResource", "NotPrincipal"):
            if odd in statement:
                out.append(f"{sid}: {odd} is not allowed (this check cannot reason about it)")
        if statement["Effect"] != "Allow":
            continue
        actions = _listed(statement.get("Action", []))
        resources = _listed(statement.get("Resource", []))
        for action in NEVER:
            if _covers(actions, action):
                out.append(f"{sid}: allows {action}")
        for action, keys in CONDITIONED.items():
            if _covers(actions, action) and not _conditioned_on(statement, keys):
                out.append(f"{sid}: allows {action} without a condition on {' or '.join(keys)}")
        if _covers(actions, "iam:PassRole") and any(_matches(resources, r, case=True) for r in ANY_ROLE):
            out.append(f"{sid}: allows iam:PassRole of any role ({', '.join(resources)})")
        deletes = [a for a in actions if _is_delete(a)]
        if deletes and "*" in resources and not statement.get("Condition"):
            out.append(f"{sid}: allows {', '.join(deletes)} on every resource (*) without a condition")
    return out
