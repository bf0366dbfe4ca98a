"""The apps' secrets: SSM Parameter Store SecureStrings under /mvp/<cluster>/<project>/<KEY>.

Values go in (`put`) and never come out: listing reads DescribeParameters, which has no values,
and nothing here asks for decryption. A task gets its secrets from ECS, by the parameter's ARN
(see `templates.with_container_settings`), with its execution role's own read permission.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .clients import aws_errors, error_code

# SSM's standard tier holds values of up to 4 KB.
MAX_VALUE = 4096


def secret_arn(cluster: str, project: str, key: str) -> dict:
    """The ARN of a secret's SSM parameter, as the template says it (the account and partition
    are the stack's own)."""
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter"
                       f"{secret_path(cluster, project)}/{key}"}


def secret_path(cluster: str, project: str) -> str:
    return f"/mvp/{cluster}/{project}"


@dataclass(frozen=True)
class SecretInfo:
    key: str
    name: str  # the parameter's full name
    changed: str  # when it last changed, UTC (YYYY-MM-DD HH:MM:SS)
    version: int
    type: str


class Secrets:
    def __init__(self, client: Any):
        self.client = client

    def list(self, cluster: str, project: str) -> list[SecretInfo]:
        path = secret_path(cluster, project)
        found = []
        kwargs = {"ParameterFilters": [{"Key": "Path", "Option": "OneLevel", "Values": [path]}], "MaxResults": 50}
        with aws_errors():
            while True:
                page = self.client.describe_parameters(**kwargs)
                for p in page.get("Parameters", []):
                    changed = p.get("LastModifiedDate")
                    if isinstance(changed, datetime):
                        changed = changed.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                    found.append(SecretInfo(key=p["Name"].rsplit("/", 1)[-1], name=p["Name"],
                                            changed=str(changed or ""), version=int(p.get("Version") or 0),
                                            type=p.get("Type", "")))
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        return sorted(found, key=lambda s: s.key)

    def put(self, cluster: str, project: str, key: str, value: str) -> int:
        """Set (or replace) one secret; its new version."""
        with aws_errors():
            answer = self.client.put_parameter(
                Name=f"{secret_path(cluster, project)}/{key}", Value=value, Type="SecureString", Overwrite=True,
                Description=f"secret {key} of {project} in cluster {cluster} (set by inv app.secret.set)")
        return int(answer.get("Version") or 0)

    def delete(self, cluster: str, project: str, key: str) -> bool:
        """Remove one; False when there was none."""
        from botocore.exceptions import ClientError

        with aws_errors():
            try:
                self.client.delete_parameter(Name=f"{secret_path(cluster, project)}/{key}")
            except ClientError as exc:
                if error_code(exc) == "ParameterNotFound":
                    return False
                raise
        return True
