"""Which ECS cluster and which service an app runs, on any pair of templates.

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
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ..errors import StackFailed, UsageError

CLUSTER_TYPE = "AWS::ECS::Cluster"
SERVICE_TYPE = "AWS::ECS::Service"
# Output keys that name the ECS cluster or the service, best first; matched ignoring case.
CLUSTER_OUTPUTS = ("ClusterName", "EcsClusterName", "ECSClusterName", "Cluster", "EcsCluster", "ECSCluster",
                   "ClusterArn", "EcsClusterArn", "ECSClusterArn")
SERVICE_OUTPUTS = ("ServiceName", "EcsServiceName", "ECSServiceName", "Service", "EcsService", "ECSService",
                   "ServiceArn", "EcsServiceArn", "ECSServiceArn")
# What ECS allows as a cluster's or a service's name.
ECS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


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
    by_key = {key.lower(): value for key, value in outputs.items()}
    for key in keys:
        name = ecs_name(by_key.get(key.lower(), ""), kind)
        if name:
            return name
    return ""


def _physical_name(physical_id: str, kind: str) -> str:
    # A resource with a compound identifier may show its parts joined by "|".
    return next((name for name in (ecs_name(p, kind) for p in physical_id.split("|")) if name), "")


def ecs_resources(world: Any, stack: Any, *, fresh: bool = False) -> Mapping[str, tuple[str, ...]]:
    """The names of the stack's ECS clusters and services ({resource type: names}), as its
    resources say; read once per run per version of the stack (`fresh`: read again now)."""

    def read() -> Mapping[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {CLUSTER_TYPE: [], SERVICE_TYPE: []}
        for resource in world.stacks().list_stack_resources(stack.stack_id or stack.name):
            if resource.resource_type not in found or not resource.physical_id:
                continue
            if resource.status.startswith("DELETE_") and resource.status != "DELETE_FAILED":
                continue  # gone, going (a replaced resource's clean-up) or left out of the stack
            kind = "cluster" if resource.resource_type == CLUSTER_TYPE else "service"
            name = _physical_name(resource.physical_id, kind)
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


def cluster_ecs_cluster(world: Any, cluster: Any, cluster_stack: Any = None) -> str:
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


def service_names(world: Any, stack: Any, cluster: Any, *, fresh: bool = False) -> tuple[str, str]:
    """(ECS cluster, service) of the app stack `stack` (a `StackInfo`) in `cluster`. `fresh`: the
    stack was just changed by this run, so its resources are read again even where its id, last
    update and status look as before (moto sets no LastUpdatedTime on updates)."""
    ecs_cluster = from_outputs(stack.outputs, CLUSTER_OUTPUTS, "cluster") or cluster_ecs_cluster(world, cluster)
    service = from_outputs(stack.outputs, SERVICE_OUTPUTS, "service")
    if not service:
        service = _one(ecs_resources(world, stack, fresh=fresh)[SERVICE_TYPE], stack.name, "ECS service", stack,
                       "ServiceName")
    return ecs_cluster, service or stack.name
