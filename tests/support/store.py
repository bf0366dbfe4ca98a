"""The deploy store as tests see it in the emulator: its table, its items, read back with boto3."""

from __future__ import annotations

from pathlib import Path

STACK = "mvp-deploy-state"
TEMPLATE = Path(__file__).resolve().parents[2] / "mvp_tasks" / "state" / "store.yml"


def create_store(cfn) -> str:
    """Make the store's stack as `cluster.up` would (for tests that build the world by hand)."""
    cfn.create_stack(StackName=STACK, TemplateBody=TEMPLATE.read_text(),
                     Tags=[{"Key": "mvp:managed-by", "Value": "mvp-tasks"}, {"Key": "mvp:role", "Value": "deploy-store"}])
    return table(cfn)


def table(cfn) -> str:
    stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}["Table"]


def app_pk(cluster: str, project: str) -> str:
    return f"app#{cluster}#{project}"


def lock_key(cluster: str, project: str) -> dict:
    return {"pk": {"S": f"lock#{cluster}#{project}"}, "sk": {"S": "lock"}}


def plain(item: dict) -> dict:
    return {k: next(iter(v.values())) for k, v in item.items()}


def history_items(dynamodb, cfn, cluster: str, project: str) -> list[dict]:
    """An app's history items in a cluster, oldest first, as plain dicts."""
    items = dynamodb.query(
        TableName=table(cfn), KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": app_pk(cluster, project)}}, ConsistentRead=True,
    )["Items"]
    return [plain(i) for i in items]


def lock_item(dynamodb, cfn, cluster: str, project: str) -> dict | None:
    item = dynamodb.get_item(TableName=table(cfn), Key=lock_key(cluster, project), ConsistentRead=True).get("Item")
    return plain(item) if item else None
