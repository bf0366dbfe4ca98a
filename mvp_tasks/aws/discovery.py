"""Which ECS cluster, which service and which log group an app has, on any pair of templates.

Our own templates name both in their outputs. A template written elsewhere (adopted by config
alone) may name them under other output keys, only in its resources, or nowhere; so each name
comes from the first of these that answers:

  the ECS cluster  1. the app stack's outputs (ClusterName, Cluster, EcsCluster, ClusterArn, ...)
                   2. the cluster stack's outputs (the same keys)
                   3. the cluster stack's `AWS::ECS::Cluster` resource (its physical id)
                   4. the cluster stack's name (what our cluster template names its ECS cluster)
  the service      1. the app stack's outputs (ServiceName, Service, EcsService, ServiceArn, ...)
                   2. the app stack's `AWS::ECS::Service` resource (its physical id)
                   3. the app stack's name

An ARN (an output such as ClusterArn, or a service's physical id: CloudFormation and moto both
give a service's ARN there, and a cluster's name) becomes the name in it. Resources are read with
ListStackResources only where outputs do not answer, once per stack per run: the answer is kept in
`world.memo` under the stack's id, its last update and its status, so a stack that changes in the
same run is read again. Everything here only reads: planners may use it.

The task definition an app stack registered for its service (what its service must run once a
rollout of the stack's release has gone out) comes from its TaskDefinitionArn output (or a key like
it), else its `AWS::ECS::TaskDefinition` resource (the physical id is the revision's ARN). The output
is taken as it is where it names what the service runs (no call); where it does not, the resource
has the last word (an output can be stale: moto's were, after a change set, until the sandbox fixed it).

An app's log group (for `app.logs` and status) is found the same way, from the first that answers:
the app stack's outputs (LogGroupName, LogGroup, ... or a log group's ARN), its
`AWS::Logs::LogGroup` resource (its physical id is the group's name), the `awslogs-group` option
of the running task definition's container. So a template with no outputs at all, that reads the
cluster's values with `Fn::ImportValue` and names its log group after the stack, needs no config.

These functions take what they read through (`StackReads`): a `World` in the tool, anything of
that shape in tests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from ..errors import StackFailed, UsageError

if TYPE_CHECKING:
    from ..memo import Memo
    from ..settings import ClusterSettings
    from .services import Services
    from .stacks import StackInfo, Stacks


class StackReads(Protocol):
    """What discovery reads through (a `World` is one): stacks, ECS services, the run's memo."""

    memo: "Memo"

    def stacks(self) -> "Stacks": ...

    def services(self) -> "Services": ...

    def cluster_stack(self, cluster: Any) -> "StackInfo":
        """The cluster's stack, ready for apps; raises `UsageError` or `StackFailed` when it is not."""
        ...


CLUSTER_TYPE = "AWS::ECS::Cluster"
SERVICE_TYPE = "AWS::ECS::Service"
LOG_GROUP_TYPE = "AWS::Logs::LogGroup"
TASK_DEFINITION_TYPE = "AWS::ECS::TaskDefinition"
# Output keys that name the ECS cluster or the service, best first; matched ignoring case.
CLUSTER_OUTPUTS = ("ClusterName", "EcsClusterName", "ECSClusterName", "Cluster", "EcsCluster", "ECSCluster",
                   "ClusterArn", "EcsClusterArn", "ECSClusterArn")
SERVICE_OUTPUTS = ("ServiceName", "EcsServiceName", "ECSServiceName", "Service", "EcsService", "ECSService",
                   "ServiceArn", "EcsServiceArn", "ECSServiceArn")
TASK_DEFINITION_OUTPUTS = ("TaskDefinitionArn", "TaskDefinition", "EcsTaskDefinitionArn", "ECSTaskDefinitionArn",
                           "EcsTaskDefinition", "ECSTaskDefinition", "TaskDef", "TaskDefArn")
LOG_GROUP_OUTPUTS = ("LogGroupName", "LogGroup", "LogsGroup", "LogGroupArn", "AppLogGroup", "ServiceLogGroup",
                     "ContainerLogGroup", "CloudWatchLogGroup", "LogGroupNameOutput")
# What ECS allows as a cluster's or a service's name.
ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# A task definition's ARN (arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION).
TASK_DEFINITION_ARN = re.compile(r"^arn:[a-z0-9-]+:ecs:[a-z0-9-]*:[0-9]*:task-definition/[A-Za-z0-9_-]{1,255}:[0-9]+$")
# What CloudWatch Logs allows as a log group's name.
LOG_GROUP_NAME = re.compile(r"^[A-Za-z0-9_./#-]{1,512}$")


def ecs_name(value: str, kind: str) -> str:
    """The name in `value`, an ECS name or an ECS ARN of `kind` ("cluster" or "service"): a service's
    ARN is `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME` (or `service/NAME`, the old format).
    "" when `value` is neither (an ARN of something else, an empty output)."""
    value = (value or "").strip()
    if not value.startswith("arn:"):
        return value if ECS_NAME.match(value) else ""
    parts = value.split(":", 5)
    if len(parts) < 6 or parts[2] != "ecs":
        return ""
    resource = parts[5].split("/")
    if resource[0] != kind or len(resource) < 2 or not ECS_NAME.match(resource[-1]):
        return ""
    return resource[-1]


def from_outputs(outputs: Mapping[str, str], keys: Iterable[str], kind: str) -> str:
    """The first of `keys` (ignoring case) among `outputs` that holds an ECS name or ARN of `kind`."""
    return from_outputs_as(outputs, keys, lambda value: ecs_name(value, kind))


def from_outputs_as(outputs: Mapping[str, str], keys: Iterable[str], parse: Callable[[str], str]) -> str:
    """The first of `keys` (ignoring case) among `outputs` whose value `parse` accepts, as it gives it."""
    by_key = {key.lower(): value for key, value in outputs.items()}
    for key in keys:
        value = parse(by_key.get(key.lower(), ""))
        if value:
            return value
    return ""


def _physical_name(physical_id: str, kind: str) -> str:
    # A resource with a compound identifier may show its parts joined by "|".
    return next((name for name in (ecs_name(p, kind) for p in physical_id.split("|")) if name), "")


def log_group_name(value: str) -> str:
    """The log group's name in `value`, a name or a log group's ARN
    (`arn:aws:logs:REGION:ACCOUNT:log-group:NAME`, often with `:*` after it); "" when neither."""
    value = (value or "").strip()
    if value.startswith("arn:"):
        parts = value.split(":", 6)
        if len(parts) < 7 or parts[2] != "logs" or parts[5] != "log-group":
            return ""
        value = parts[6].removesuffix(":*")
    return value if LOG_GROUP_NAME.match(value) else ""


def ecs_resources(world: StackReads, stack: "StackInfo", *, fresh: bool = False) -> Mapping[str, tuple[str, ...]]:
    """The names of the stack's ECS clusters and services, of its log groups and the ARNs of its
    task definitions ({resource type: names}), as its resources say; read once per run per version
    of the stack (`fresh`: read again now)."""

    def read() -> Mapping[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {CLUSTER_TYPE: [], SERVICE_TYPE: [], LOG_GROUP_TYPE: [],
                                       TASK_DEFINITION_TYPE: []}
        for resource in world.stacks().list_stack_resources(stack.stack_id or stack.name):
            if resource.resource_type not in found or not resource.physical_id:
                continue
            if resource.status.startswith("DELETE_") and resource.status != "DELETE_FAILED":
                continue  # gone, going (a replaced resource's clean-up) or left out of the stack
            if resource.resource_type == LOG_GROUP_TYPE:
                name = log_group_name(resource.physical_id)
            elif resource.resource_type == TASK_DEFINITION_TYPE:
                name = task_definition_arn(resource.physical_id)
            else:
                name = _physical_name(resource.physical_id,
                                      "cluster" if resource.resource_type == CLUSTER_TYPE else "service")
            if name and name not in found[resource.resource_type]:
                found[resource.resource_type].append(name)
        return {key: tuple(names) for key, names in found.items()}

    key = ("ecs resources", stack.stack_id or stack.name, stack.last_updated or stack.created, stack.status)
    if fresh:
        world.memo.forget(key)
    return world.memo.get(key, read)


def _one(names: tuple[str, ...], prefer: str, what: str, stack: Any, output: str) -> str:
    """The only name, or the one called `prefer`, or "" for none; several others are refused."""
    if len(names) <= 1:
        return names[0] if names else ""
    if prefer in names:
        return prefer
    raise UsageError(f"stack {stack.name} holds {len(names)} {what}s ({', '.join(names)}): which one is the "
                     "app's is not clear", f"give its template a {output} output naming it")


def cluster_ecs_cluster(world: StackReads, cluster: "ClusterSettings", cluster_stack: Any = None) -> str:
    """The ECS cluster of `cluster`, from its stack (`cluster_stack`: as just read; not given:
    `world.cluster_stack`): its outputs, else its ECS cluster resource, else its name."""
    stack = cluster_stack
    if stack is None:
        try:
            stack = world.cluster_stack(cluster)
        except (UsageError, StackFailed):
            return cluster.stack_name  # no stack to read (missing, or not ready): our convention
    name = from_outputs(stack.outputs, CLUSTER_OUTPUTS, "cluster")
    if not name:
        name = _one(ecs_resources(world, stack)[CLUSTER_TYPE], cluster.stack_name, "ECS cluster", stack,
                    "ClusterName")
    return name or cluster.stack_name


def service_names(world: StackReads, stack: "StackInfo", cluster: "ClusterSettings", *,
                  fresh: bool = False) -> tuple[str, str]:
    """(ECS cluster, service) of the app stack `stack` (a `StackInfo`) in `cluster`. `fresh`: the
    stack was just changed by this run, so its resources are read again even where its id, last
    update and status look as before (moto sets no LastUpdatedTime on updates)."""
    ecs_cluster = from_outputs(stack.outputs, CLUSTER_OUTPUTS, "cluster") or cluster_ecs_cluster(world, cluster)
    service = from_outputs(stack.outputs, SERVICE_OUTPUTS, "service")
    if not service:
        service = _one(ecs_resources(world, stack, fresh=fresh)[SERVICE_TYPE], stack.name, "ECS service", stack,
                       "ServiceName")
    return ecs_cluster, service or stack.name


def get_task_definition(world: StackReads, arn: str) -> Mapping[str, Any]:
    """The task definition `arn`, read once per run (a revision never changes)."""
    return world.memo.get(("task definition", arn), lambda: world.services().get_task_definition(arn))


def running_task_definition(world: StackReads, stack: "StackInfo", cluster: "ClusterSettings") -> str:
    """The ARN of the task definition the app's service runs (its primary deployment's), "" when
    there is no such service."""
    ecs_cluster, service = service_names(world, stack, cluster)
    state = world.services().get_service(ecs_cluster, service)
    if state is None:
        return ""
    primary = state.primary
    return (primary.task_definition if primary else "") or state.task_definition


def task_definition_arn(value: str) -> str:
    """The task definition ARN in `value` ("" when it is none)."""
    value = (value or "").strip()
    return value if TASK_DEFINITION_ARN.match(value) else ""


def family_revision(arn: str) -> str:
    """`family:revision` of a task definition ARN (or of `family:revision` itself)."""
    return (arn or "").rsplit("/", 1)[-1]


def registered_task_definition(world: StackReads, stack: "StackInfo", running: str = "") -> str:
    """The ARN of the task definition the app stack `stack` registered for its service ("" where
    it says none, or holds several and none of them is of `running`'s family): its TaskDefinitionArn
    output (or a key like it) where that names `running`, what the service runs (no call), else its
    `AWS::ECS::TaskDefinition` resource (read once per run per version of the stack, as
    `ecs_resources`), else the output as it is."""
    output = from_outputs_as(stack.outputs, TASK_DEFINITION_OUTPUTS, task_definition_arn)
    if output and (not running or family_revision(output) == family_revision(running)):
        return output
    arns = ecs_resources(world, stack)[TASK_DEFINITION_TYPE]
    if len(arns) == 1:
        return arns[0]
    family = family_revision(running).rpartition(":")[0]
    ours = [arn for arn in arns if family and family_revision(arn).rpartition(":")[0] == family]
    if len(ours) == 1:
        return ours[0]
    return output


def log_group(world: StackReads, stack: "StackInfo", cluster: "ClusterSettings", *, fresh: bool = False) -> str:
    """The log group of the app stack `stack` in `cluster`: its outputs, else its log group
    resource, else the `awslogs-group` of the task definition its service runs (see the module's
    docstring). Raises `UsageError` when none of them names one, or several resources do."""
    by_key = {key.lower(): value for key, value in stack.outputs.items()}
    for key in LOG_GROUP_OUTPUTS:
        name = log_group_name(by_key.get(key.lower(), ""))
        if name:
            return name
    groups = ecs_resources(world, stack, fresh=fresh)[LOG_GROUP_TYPE]
    if len(groups) == 1:
        return groups[0]
    arn = running_task_definition(world, stack, cluster)
    from_task = awslogs_groups(get_task_definition(world, arn)) if arn else []
    if groups:
        # Several groups in the stack: the one the running containers write to, else ask.
        chosen = next((g for g in from_task if g in groups), "")
        if chosen:
            return chosen
        raise UsageError(f"stack {stack.name} holds {len(groups)} log groups ({', '.join(groups)}): which one is "
                         "the app's is not clear", "give its template a LogGroupName output naming it")
    if from_task:
        return from_task[0]
    raise UsageError(f"cannot find the log group of stack {stack.name}: no LogGroupName output, no "
                     f"{LOG_GROUP_TYPE} resource, no awslogs-group in the task definition its service runs",
                     "give its template a LogGroupName output naming it")


def awslogs_groups(definition: Mapping[str, Any]) -> list[str]:
    """The `awslogs-group`s a task definition's containers write to, essential containers first."""
    containers = sorted(definition.get("containerDefinitions", []), key=lambda c: not c.get("essential", True))
    found: list[str] = []
    for container in containers:
        config = container.get("logConfiguration") or {}
        name = log_group_name((config.get("options") or {}).get("awslogs-group", ""))
        if config.get("logDriver") == "awslogs" and name and name not in found:
            found.append(name)
    return found
