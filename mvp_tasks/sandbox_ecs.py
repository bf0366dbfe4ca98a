"""The sandbox's AWS: a moto server whose ECS services roll out like ECS's, on good days and bad.

    python -m mvp_tasks.sandbox_ecs --port 5000

moto (pinned in pyproject.toml: this reaches into its internals) keeps a service's counts fixed
from its creation and never starts a task for it. Here a thread of our own drives every service
the way ECS does, one step per tick (`MVP_SANDBOX_TICK` seconds, default 0.5):

- each new deployment (a service created, a new task definition, `forceNewDeployment`) starts
  IN_PROGRESS; its tasks are launched (PENDING), then run (RUNNING), until its running count
  reaches its own desired count; then older deployments drain (their tasks stop) and it is
  COMPLETED. Tasks are real moto tasks: `list_tasks(serviceName=...)`/`describe_tasks` show them,
  and behind a load balancer their addresses are registered in its target group.
- a service marked to fail (`POST /mvp-sandbox/fail`, what `inv sandbox.fail` sends) gets, for
  every deployment started after the mark, tasks that stop the way ECS stops them: an image that
  cannot be pulled (TaskFailedToStart), an essential container that exits (EssentialContainerExited,
  exit code 1, a last log line in its awslogs stream), or failed ELB health checks (the target
  unhealthy in its target group); or tasks that never leave PENDING (`stuck`: a pull or a placement
  that hangs), so the rollout stays IN_PROGRESS until it is stopped. Each failure is counted on the deployment and told in the service
  events; at the circuit breaker's threshold the deployment goes FAILED and, with rollback on, the
  previous deployment is PRIMARY again.
- `ListServiceDeployments`, `DescribeServiceDeployments` and `StopServiceDeployment` (moto has
  none of them) are answered for these deployments; `StopServiceDeployment(ROLLBACK)` rolls back.

Services made by CloudFormation keep their launch type, network configuration, load balancers and
deployment configuration (moto drops them); a stack updated through a change set has its outputs
evaluated anew (moto keeps the ones from before). Everything listens on loopback only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import json
import math
import os
import signal
import threading
import time
import types
import uuid
from typing import Any

TICK_ENV = "MVP_SANDBOX_TICK"
DEFAULT_TICK = 0.5
FAIL_PATH = "/mvp-sandbox/fail"
REASONS = ("image", "exit", "health", "stuck")
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."

_lock = threading.RLock()  # one lock for the driver and every patched call: no half-made deployment is read
_marks: dict[tuple[str, str], tuple[str, float]] = {}  # (cluster, service) -> (reason, since epoch)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def get_tick() -> float:
    try:
        return max(0.01, float(os.environ.get(TICK_ENV, DEFAULT_TICK)))
    except ValueError:
        return DEFAULT_TICK


# --- failure marks ---------------------------------------------------------------------------------


def set_mark(cluster: str, service: str, reason: str) -> None:
    """Mark a service to fail (reason one of REASONS) from now on; "" clears the mark."""
    if reason and reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    with _lock:
        if reason:
            _marks[(cluster, service)] = (reason, time.time())
        else:
            _marks.pop((cluster, service), None)


def _mark_for(svc, deployment: dict) -> str:
    mark = _marks.get((svc.cluster_name, svc.name))
    if not mark:
        return ""
    reason, since = mark
    created = deployment.get("createdAt")
    if isinstance(created, _dt.datetime):
        created_ts = created.replace(tzinfo=created.tzinfo or _dt.timezone.utc).timestamp()
        if created_ts + 0.001 < since:
            return ""  # deployments from before the mark run on as they did
    return reason


def send_mark(endpoint: str, cluster: str, service: str, reason: str, timeout: float = 10.0) -> None:
    """Ask the sandbox server at `endpoint` (loopback only) to fail `service` of ECS cluster
    `cluster` for `reason` (one of REASONS), or to stop failing it (reason "")."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from .errors import SandboxError

    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if not _loopback(host if host != "localhost" else "127.0.0.1"):
        raise SandboxError(f"{endpoint} is not the local sandbox (not a loopback address); failures are injected "
                           "only there", "start it with `inv sandbox.up`, or unset AWS_ENDPOINT_URL")
    body = json.dumps({"cluster": cluster, "service": service, "reason": reason}).encode()
    request = urllib.request.Request(endpoint.rstrip("/") + FAIL_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SandboxError(f"the AWS emulator at {endpoint} cannot inject failures (a plain moto server?)",
                               "restart the sandbox: inv sandbox.down && inv sandbox.up") from None
        raise SandboxError(f"the sandbox refused the failure mark: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SandboxError(f"the sandbox at {endpoint} does not answer ({exc})", "start it with `inv sandbox.up`") from None


# --- moto internals: patches ------------------------------------------------------------------------

_installed = False


def _state(svc) -> dict:
    state = getattr(svc, "_mvp", None)
    if state is None:
        state = svc._mvp = {"tasks": {}}
    return state


def _event(svc, message: str) -> None:
    events = list(svc.events)
    events.insert(0, {"id": str(uuid.uuid4()), "createdAt": _now(), "message": f"(service {svc.name}) {message}"})
    svc.events = events[:100]  # DescribeServices shows the newest 100


def _new_deployment(svc, task_definition: str | None) -> dict:
    from moto.moto_api._internal import mock_random

    dep_id = f"ecs-svc/{mock_random.randint(0, 10 ** 18):019d}"
    now = _now()
    return {
        "createdAt": now,
        "desiredCount": svc.desired_count,
        "failedTasks": 0,
        "id": dep_id,
        "launchType": svc.launch_type,
        "pendingCount": 0,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {dep_id} in progress.",
        "runningCount": 0,
        "platformVersion": svc.platform_version,
        "networkConfiguration": svc.network_configuration or None,
        "platformFamily": "EC2" if svc.launch_type == "EC2" else "FARGATE",
        "status": "PRIMARY",
        "taskDefinition": task_definition,
        "updatedAt": now,
    }


DEFAULT_DEPLOYMENT_CONFIGURATION = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase properties as the ECS API's camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def install() -> None:
    """Patch moto's ECS (and a little of ELBv2) in this process. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    from moto.cloudformation import models as cfn_models
    from moto.ecs import models as ecs_models
    from moto.ecs import responses as ecs_responses
    from moto.elbv2 import models as elbv2_models

    backend_cls = ecs_models.EC2ContainerServiceBackend
    original_create = backend_cls.create_service
    original_update = backend_cls.update_service
    original_list_tasks = backend_cls.list_tasks
    original_create_response = ecs_responses.EC2ContainerServiceResponse.create_service

    def create_service(self, *args, **kwargs):
        with _lock:
            svc = original_create(self, *args, **kwargs)
            if not hasattr(svc, "deployment_configuration"):
                svc.deployment_configuration = json.loads(json.dumps(DEFAULT_DEPLOYMENT_CONFIGURATION))
            svc.running_count = svc.pending_count = 0
            if svc.deployments:
                svc.deployments = [_new_deployment(svc, svc.task_definition)]
            _state(svc)
            return svc

    def update_service(self, props):
        with _lock:
            cluster = props.get("cluster", "default")
            svc = self._get_service(cluster, props["service"].split("/")[-1])
            forced = bool(props.get("force_new_deployment"))
            before_td, before_desired = svc.task_definition, svc.desired_count
            before = [dict(d) for d in svc.deployments]
            running, pending = svc.running_count, svc.pending_count
            svc = original_update(self, props)
            svc.deployments = before  # moto renames the primary on a forced deployment: undo, then do it as ECS
            svc.running_count, svc.pending_count = running, pending
            if svc.deployment_controller.get("type", "ECS") != "ECS" or not before:
                return svc
            if svc.task_definition and svc.task_definition != before_td:
                # CloudFormation names the family: the service runs its latest revision's ARN
                svc.task_definition = self.describe_task_definition(svc.task_definition).arn
            try:
                svc.desired_count = int(svc.desired_count)
            except (TypeError, ValueError):
                svc.desired_count = before_desired
            if forced or svc.task_definition != before_td:
                for dep in svc.deployments:
                    if dep["status"] == "PRIMARY":
                        dep["status"] = "ACTIVE"
                        dep["updatedAt"] = _now()
                svc.deployments = [_new_deployment(svc, svc.task_definition)] + svc.deployments
            elif svc.desired_count != before_desired:
                svc.deployments[0]["desiredCount"] = svc.desired_count
            return svc

    def list_tasks(self, cluster_str=None, container_instance=None, family=None, started_by=None,
                   service_name=None, desiredStatus=None):
        tasks = original_list_tasks(self, cluster_str, container_instance, family, started_by, None, desiredStatus)
        if service_name:
            name = service_name.split("/")[-1]
            tasks = [t for t in tasks if t.group == f"service:{name}"]
        return tasks

    def create_service_response(self):
        result = original_create_response(self)
        config = self._get_param("deploymentConfiguration")
        if config:
            with _lock:
                svc = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
                svc.deployment_configuration = _merged_config(config)
        return result

    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        cluster = props["Cluster"]
        cluster = cluster.name if isinstance(cluster, ecs_models.Cluster) else cluster
        task_definition = props.get("TaskDefinition")
        if isinstance(task_definition, ecs_models.TaskDefinition):
            task_definition = task_definition.arn
        backend = ecs_models.ecs_backends[account_id][region_name]
        load_balancers = _camel(props.get("LoadBalancers") or [])
        for lb in load_balancers:
            if "containerPort" in lb:
                lb["containerPort"] = int(lb["containerPort"])
        network = _camel(props.get("NetworkConfiguration")) or None
        svc = backend.create_service(
            cluster, props.get("ServiceName") or resource_name, int(props.get("DesiredCount", 1) or 0),
            task_definition_str=task_definition, load_balancers=load_balancers,
            launch_type=props.get("LaunchType"), network_configuration=network,
            platform_version=props.get("PlatformVersion"),
        )
        if props.get("DeploymentConfiguration"):
            svc.deployment_configuration = _merged_config(_camel(props["DeploymentConfiguration"]))
        return svc

    def health_for(self, target, ec2_backend):
        override = getattr(self, "_mvp_health", {}).get(target["Id"])
        if override is not None and target["Id"] in self.targets:
            state, reason, description = override
            return elbv2_models.FakeHealthStatus(target["Id"], self.targets[target["Id"]]["Port"],
                                                 self.health_check_port, state, reason, description)
        return original_health_for(self, target, ec2_backend)

    original_td_update = ecs_models.TaskDefinition.update_from_cloudformation_json

    def update_task_definition_from_cloudformation_json(cls, original_resource, new_resource_name,
                                                        cloudformation_json, account_id, region_name, **kwargs):
        # A stack update that changes a task definition registers a new revision; CloudFormation then
        # updates the services that refer to it (their TaskDefinition property), which starts a
        # deployment. moto compares the services' template text, unchanged, and leaves them be. A
        # service is matched by the family (each app's template names its own): one rolled back to
        # an older revision since still refers to the stack's resource and gets the new one.
        new = original_td_update(original_resource, new_resource_name, cloudformation_json, account_id,
                                 region_name, **kwargs)
        if new is not original_resource:
            backend = ecs_models.ecs_backends[account_id][region_name]
            family = original_resource.arn.rsplit(":", 1)[0]
            with _lock:
                for svc in list(backend.services.values()):
                    if svc.status == "ACTIVE" and (svc.task_definition or "").rsplit(":", 1)[0] == family:
                        backend.update_service({"cluster": svc.cluster_name, "service": svc.name,
                                                "task_definition": new.arn})
        return new

    original_health_for = elbv2_models.FakeTargetGroup.health_for
    original_execute_change_set = cfn_models.CloudFormationBackend.execute_change_set

    def execute_change_set(self, change_set_name, stack_name=None):
        # moto applies an executed change set's resources but keeps the outputs (and exports) it
        # evaluated before; CloudFormation evaluates them anew, so an output that names a resource
        # replaced by the update (a task definition's new revision) names the new one.
        original_execute_change_set(self, change_set_name, stack_name)
        change_set = self.change_sets.get(change_set_name) or next(
            (c for c in self.change_sets.values() if c.change_set_name == change_set_name), None)
        stack = self.stacks.get(change_set.stack_id) if change_set is not None else None
        if stack is None:
            return
        before = stack.template_dict
        stack.template_dict = change_set.template_dict
        try:
            outputs = stack._create_output_map()
            for key in list(outputs):
                outputs[key]  # evaluated now (moto's map is lazy): one it cannot evaluate keeps the old
        except Exception:  # noqa: BLE001 - moto's resource map lacks what an output names: keep the old
            stack.template_dict = before
            return
        stack.output_map = outputs

    cfn_models.CloudFormationBackend.execute_change_set = execute_change_set
    backend_cls.create_service = create_service
    backend_cls.update_service = update_service
    backend_cls.list_tasks = list_tasks
    ecs_responses.EC2ContainerServiceResponse.create_service = create_service_response
    ecs_models.Service.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    ecs_models.TaskDefinition.update_from_cloudformation_json = classmethod(
        update_task_definition_from_cloudformation_json)
    elbv2_models.FakeTargetGroup.health_for = health_for


def _merged_config(config: dict) -> dict:
    merged = json.loads(json.dumps(DEFAULT_DEPLOYMENT_CONFIGURATION))
    for key, value in config.items():
        merged[key] = value
    breaker = merged.get("deploymentCircuitBreaker") or {}
    for key in ("enable", "rollback"):
        value = breaker.get(key, False)
        breaker[key] = value if isinstance(value, bool) else str(value).lower() == "true"
    merged["deploymentCircuitBreaker"] = breaker
    for key in ("maximumPercent", "minimumHealthyPercent"):
        if key in merged:
            merged[key] = int(merged[key])
    return merged


# --- the driver --------------------------------------------------------------------------------------


def _backends():
    from moto.ecs.models import ecs_backends

    for _account, regions in list(ecs_backends.items()):
        for _region, backend in list(regions.items()):
            yield backend


def tick() -> None:
    """One step of every service of every account and region."""
    with _lock:
        for backend in _backends():
            for svc in list(backend.services.values()):
                try:
                    _drive(backend, svc)
                except Exception as exc:  # one odd service must not stop every other's rollouts
                    print(f"sandbox_ecs: service {svc.name}: {type(exc).__name__}: {exc}", flush=True)


def _tasks(svc, dep_id: str) -> list:
    return _state(svc)["tasks"].setdefault(dep_id, [])


# Ticks between reaching the circuit breaker's threshold and ECS acting on it (its evaluation lags
# behind the failed tasks, which is what lets a watcher that counts them be first).
BREAKER_LAG = 4


def _threshold(desired: int) -> int:
    # ECS: half the desired count, at least 3 and at most 200 failed tasks.
    return min(200, max(3, math.ceil(desired * 0.5)))


def _drive(backend, svc) -> None:
    if svc.status != "ACTIVE":
        for dep_id, tasks in list(_state(svc)["tasks"].items()):
            for task in tasks:
                if task.last_status != "STOPPED":
                    _stop(backend, svc, task, "ServiceSchedulerInitiated", "Service deleted")
        return
    if not svc.deployments or not svc.task_definition:
        return
    primary = svc.deployments[0]
    # Tasks of the primary deployment move on: PENDING -> RUNNING, or stop as the mark says. A
    # failing task takes a few ticks to fail, as ECS's do (an image pull is retried, a container
    # runs a moment, health checks fail several times), so failures come one after another.
    for task in list(_tasks(svc, primary["id"])):
        task._mvp_age += 1
        fail = task._mvp_fail
        if task.last_status == "PENDING":
            if fail == "image":
                if task._mvp_age >= 3:
                    _fail(backend, svc, primary, task)
            elif fail == "stuck":
                pass  # hangs in PENDING: no failure to count, no progress either
            else:
                _run(backend, svc, task)
        elif task.last_status == "RUNNING" and fail and task._mvp_age >= (3 if fail == "exit" else 4):
            _fail(backend, svc, primary, task)
    if primary["rolloutState"] == "IN_PROGRESS":
        breaker = (getattr(svc, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
        if breaker.get("enable") and primary["failedTasks"] >= _threshold(primary["desiredCount"]):
            primary["_mvp_breaker"] = primary.get("_mvp_breaker", 0) + 1
        if primary.get("_mvp_breaker", 0) > BREAKER_LAG:
            _fail_deployment(backend, svc, primary, "tasks failed to start.", rollback=bool(breaker.get("rollback")))
            _count(svc)
            return
    live = [t for t in _tasks(svc, primary["id"]) if t.last_status in ("PENDING", "RUNNING")]
    desired = primary["desiredCount"] = svc.desired_count
    if primary["rolloutState"] != "FAILED":
        if len(live) < desired:
            step = max(1, math.ceil(desired / 2))
            started = [_launch(backend, svc, primary) for _ in range(min(step, desired - len(live)))]
            started = [t for t in started if t is not None]
            if started:
                _event(svc, f"has started {len(started)} tasks: " + " ".join(f"(task {t.id})" for t in started) + ".")
        elif len(live) > desired:
            extra = [t for t in live if t.last_status == "PENDING"] + [t for t in live if t.last_status == "RUNNING"]
            stopped = extra[:len(live) - desired]
            for task in stopped:
                _stop(backend, svc, task, "ServiceSchedulerInitiated", "Scaling activity initiated by (deployment "
                      f"{primary['id']})")
            _event(svc, f"has stopped {len(stopped)} running tasks: " + " ".join(f"(task {t.id})" for t in stopped) + ".")
    # Settled: running and not about to fail (a task that will fail its health checks is not healthy yet).
    settled = [t for t in _tasks(svc, primary["id"]) if t.last_status == "RUNNING" and not t._mvp_fail]
    live = [t for t in _tasks(svc, primary["id"]) if t.last_status in ("PENDING", "RUNNING")]
    if primary["rolloutState"] != "FAILED" and len(settled) >= desired and len(live) == len(settled):
        older = []
        for dep in svc.deployments[1:]:
            # A failed deployment stays listed (ACTIVE, FAILED) a little while, as ECS's does until
            # it has drained: whoever watches it can read why it failed.
            if dep.get("rolloutState") == "FAILED" and dep.get("_mvp_linger", 0) > 0:
                dep["_mvp_linger"] -= 1
            else:
                older.append(dep)
        if older:
            stopped = []
            for dep in older:
                for task in _tasks(svc, dep["id"]):
                    if task.last_status != "STOPPED":
                        _stop(backend, svc, task, "ServiceSchedulerInitiated",
                              f"Scaling activity initiated by (deployment {primary['id']})")
                        stopped.append(task)
            for dep in older:
                _release_targets(svc, _tasks(svc, dep["id"]))
            svc.deployments = [d for d in svc.deployments if not any(d is o for o in older)]
            if stopped:
                _event(svc, f"has stopped {len(stopped)} running tasks: " + " ".join(f"(task {t.id})" for t in stopped) + ".")
        if primary["rolloutState"] == "IN_PROGRESS":
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
            primary["updatedAt"] = _now()
            _event(svc, f"deployment {primary['id']} deployment completed.")
            _event(svc, "has reached a steady state.")
    _count(svc)


def _count(svc) -> None:
    total_running = total_pending = 0
    for dep in svc.deployments:
        tasks = _tasks(svc, dep["id"])
        dep["runningCount"] = sum(1 for t in tasks if t.last_status == "RUNNING")
        dep["pendingCount"] = sum(1 for t in tasks if t.last_status == "PENDING")
        total_running += dep["runningCount"]
        total_pending += dep["pendingCount"]
    svc.running_count, svc.pending_count = total_running, total_pending


def _launch(backend, svc, deployment: dict):
    from moto.ecs.models import Task

    cluster = backend.clusters.get(svc.cluster_name)
    if cluster is None:
        return None
    task_definition = backend.describe_task_definition(deployment["taskDefinition"])
    network = svc.network_configuration or None
    if task_definition.network_mode == "awsvpc" and not network:
        _event(svc, "was unable to place a task because no network configuration was given for awsvpc.")
        return None
    try:
        # moto's own awsvpc path breaks on its ENIs (no private_dns_name): the task is made without
        # one and gets its network interface below. No container instance (Fargate): no resources.
        bare = types.SimpleNamespace(arn=task_definition.arn, network_mode="none",
                                     container_definitions=task_definition.container_definitions)
        task = Task(cluster, bare, None, None, backend=backend, group=f"service:{svc.name}",
                    launch_type=svc.launch_type or "FARGATE", started_by=deployment["id"],
                    platform_version=svc.platform_version)
        if network:
            _attach(task, svc, network)
    except Exception as exc:  # e.g. a subnet that went away
        _event(svc, f"was unable to place a task. Reason: {exc}.")
        return None
    task._transitions = []  # our thread moves it; a DescribeTasks must not
    task.last_status = "PENDING"
    task.desired_status = "RUNNING"
    task.created_at = _now()
    task.stop_code = None
    task._mvp_fail = _mark_for(svc, deployment)
    task._mvp_age = 0
    task._mvp_ip = _task_ip(task)
    for container in task.containers:
        container.last_status = "PENDING"
        container.exit_code = None
        container.exitCode = None
    backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    _tasks(svc, deployment["id"]).append(task)
    return task


def _attach(task, svc, network: dict) -> None:
    from moto.ec2.models import ec2_backends

    config = network.get("awsvpcConfiguration") or {}
    subnets = config.get("subnets") or []
    if not subnets:
        return
    ec2 = ec2_backends[svc._account_id][svc.region_name]
    eni = ec2.create_network_interface(subnet=subnets[0], private_ip_address=None,
                                       group_ids=config.get("securityGroups") or [], description="moto ECS")
    eni.status = "in-use"
    task.network_configuration = network
    task.attachments = [{
        "id": str(uuid.uuid4()), "type": "ElasticNetworkInterface", "status": "ATTACHED",
        "details": [
            {"name": "subnetId", "value": subnets[0]},
            {"name": "networkInterfaceId", "value": eni.id},
            {"name": "macAddress", "value": getattr(eni, "mac_address", "")},
            {"name": "privateIPv4Address", "value": eni.private_ip_address},
        ],
    }]


def _task_ip(task) -> str:
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return detail["value"]
    return ""


def _run(backend, svc, task) -> None:
    task.last_status = "RUNNING"
    task.started_at = task.pull_started_at = task.pull_stopped_at = _now()
    for container in task.containers:
        container.last_status = "RUNNING"
    for tg in _target_groups(svc):
        if task._mvp_ip:
            tg.register([{"Id": task._mvp_ip}])
            if task._mvp_fail == "health":
                tg._mvp_health = getattr(tg, "_mvp_health", {})
                tg._mvp_health[task._mvp_ip] = ("unhealthy", "Target.ResponseCodeMismatch",
                                                "Health checks failed with these codes: [502]")


def _target_groups(svc) -> list:
    from moto.elbv2.models import elbv2_backends

    groups = []
    for lb in svc.load_balancers or []:
        arn = lb.get("targetGroupArn")
        if not arn:
            continue
        try:
            backend = elbv2_backends[svc._account_id][svc.region_name]
        except KeyError:
            continue
        tg = backend.target_groups.get(arn)
        if tg is not None:
            groups.append(tg)
    return groups


def _release_targets(svc, tasks) -> None:
    for tg in _target_groups(svc):
        for task in tasks:
            if task._mvp_ip and task._mvp_ip in tg.targets:
                tg.deregister([{"Id": task._mvp_ip}])
                getattr(tg, "_mvp_health", {}).pop(task._mvp_ip, None)


def _stop(backend, svc, task, stop_code: str, reason: str, exit_code: int | None = 0,
          container_reason: str | None = None, keep_target: bool = False) -> None:
    now = _now()
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stop_code = stop_code
    task.stopped_reason = reason
    task.stopping_at = task.execution_stopped_at = task.stopped_at = now
    for container in task.containers:
        container.last_status = "STOPPED"
        container.exit_code = container.exitCode = exit_code
        if container_reason:
            container.reason = container_reason
    if not keep_target:
        _release_targets(svc, [task])


def _image(backend, task) -> str:
    try:
        definition = backend.describe_task_definition(task.task_definition_arn)
        return definition.container_definitions[0].get("image", "")
    except Exception:
        return ""


def _fail(backend, svc, deployment: dict, task) -> None:
    reason = task._mvp_fail
    if reason == "image":
        image = _image(backend, task)
        message = (f"CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve "
                   f"ref {image}: {image}: not found")
        _stop(backend, svc, task, "TaskFailedToStart", message, exit_code=None, container_reason=message)
    elif reason == "exit":
        _stop(backend, svc, task, "EssentialContainerExited", "Essential container in task exited", exit_code=1)
        _log(backend, svc, task, "sandbox: the app exited with code 1 (failure injected by `inv sandbox.fail`)")
    else:
        groups = _target_groups(svc)
        where = groups[0].arn if groups else "target group unknown"
        # Its target stays listed as unhealthy (ELB would show it draining, reason and all) until its
        # deployment is gone: whoever looks can read why.
        _stop(backend, svc, task, "ServiceSchedulerInitiated", f"Task failed ELB health checks in (target-group {where})",
              exit_code=137, keep_target=True)
    deployment["failedTasks"] += 1
    deployment["updatedAt"] = _now()
    if reason == "image":
        _event(svc, f"was unable to place a task. Reason: {task.stopped_reason}.")
    elif reason == "health":
        _event(svc, f"(port {(svc.load_balancers or [{}])[0].get('containerPort', 80)}) is unhealthy in "
               f"(target-group {where}) due to (reason Health checks failed with these codes: [502]).")
        _event(svc, f"has stopped 1 running tasks: (task {task.id}).")


def _log(backend, svc, task, line: str) -> None:
    """The last line a crashing container would have written, where its awslogs group exists."""
    from moto.logs.models import logs_backends

    try:
        definition = backend.describe_task_definition(task.task_definition_arn)
        container = definition.container_definitions[0]
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if not group or (container.get("logConfiguration") or {}).get("logDriver") != "awslogs":
            return
        logs = logs_backends[svc._account_id][svc.region_name]
        if group not in logs.groups:
            return
        stream = f"{prefix}/{container.get('name')}/{task.id}" if prefix else task.id
        logs.create_log_stream(group, stream)
        logs.put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": line}])
    except Exception:
        return  # logs are a courtesy; the stopped reason says what happened


def _fail_deployment(backend, svc, deployment: dict, why: str, *, rollback: bool, reason: str = "") -> None:
    deployment["rolloutState"] = "FAILED"
    deployment["rolloutStateReason"] = reason or f"ECS deployment circuit breaker: {why}"
    deployment["updatedAt"] = _now()
    _event(svc, f"deployment {deployment['id']} deployment failed: {why}")
    if not rollback:
        return
    previous = next((d for d in svc.deployments[1:] if d.get("rolloutState") == "COMPLETED"), None)
    if previous is None:
        previous = next(iter(svc.deployments[1:]), None)
    if previous is None:
        return
    for task in _tasks(svc, deployment["id"]):
        if task.last_status != "STOPPED":
            _stop(backend, svc, task, "ServiceSchedulerInitiated",
                  f"Scaling activity initiated by (deployment {previous['id']})")
    deployment["status"] = "ACTIVE"
    deployment["_mvp_linger"] = 10
    previous["status"] = "PRIMARY"
    previous["updatedAt"] = _now()
    svc.task_definition = previous["taskDefinition"]
    # The failed one stays listed (ACTIVE, FAILED) until the rolled-back deployment has drained it.
    svc.deployments = [previous] + [d for d in svc.deployments if d is not previous]
    _event(svc, f"rolling back to deployment {previous['id']}.")


# --- service deployments (moto has none of these operations) ----------------------------------------


def _service_deployment_arn(svc, dep: dict) -> str:
    from moto.utilities.utils import get_partition

    return (f"arn:{get_partition(svc.region_name)}:ecs:{svc.region_name}:{svc._account_id}:service-deployment/"
            f"{svc.cluster_name}/{svc.name}/{dep['id'].split('/')[-1]}")


def _status_of(dep: dict) -> str:
    if dep.get("_mvp_rolled_back"):
        return "ROLLBACK_SUCCESSFUL"
    if dep.get("status") != "PRIMARY" and dep.get("rolloutState") == "IN_PROGRESS":
        return "STOPPED"  # a newer deployment took over before it finished: it ended, unfinished
    return {"IN_PROGRESS": "IN_PROGRESS", "COMPLETED": "SUCCESSFUL", "FAILED": "ROLLBACK_SUCCESSFUL"}.get(
        dep.get("rolloutState", ""), "IN_PROGRESS")


def _backend_for(region: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ecs.models import ecs_backends

    # moto's server answers every request as its one default account
    return ecs_backends[DEFAULT_ACCOUNT_ID][region]


def _find_deployment(backend, arn: str):
    parts = arn.split(":service-deployment/")[-1].split("/")
    if len(parts) != 3:
        return None, None
    cluster, service, dep_id = parts
    svc = backend.services.get(f"{cluster}:{service}")
    if svc is None:
        return None, None
    for dep in svc.deployments:
        if dep["id"].split("/")[-1] == dep_id:
            return svc, dep
    return svc, None


def _brief(svc, dep: dict) -> dict:
    return {
        "serviceDeploymentArn": _service_deployment_arn(svc, dep),
        "serviceArn": svc.arn,
        "clusterArn": svc.cluster_arn,
        "startedAt": dep["createdAt"].timestamp(),
        "createdAt": dep["createdAt"].timestamp(),
        "targetServiceRevisionArn": dep["taskDefinition"],
        "status": _status_of(dep),
        "statusReason": dep.get("rolloutStateReason", ""),
    }


def answer_ecs(operation: str, body: dict, region: str) -> tuple[int, dict]:
    """The service-deployment operations moto lacks, for the deployments this module keeps."""
    backend = _backend_for(region)
    with _lock:
        if operation == "ListServiceDeployments":
            cluster = (body.get("cluster") or "default").split("/")[-1]
            try:
                svc = backend._get_service(cluster, body["service"].split("/")[-1])
            except Exception:
                return 400, {"__type": "ServiceNotFoundException", "message": "Service not found."}
            wanted = set(body.get("status") or [])
            items = [_brief(svc, d) for d in svc.deployments]
            return 200, {"serviceDeployments": [i for i in items if not wanted or i["status"] in wanted]}
        if operation == "DescribeServiceDeployments":
            found, failures = [], []
            for arn in body.get("serviceDeploymentArns") or []:
                svc, dep = _find_deployment(backend, arn)
                if dep is None:
                    failures.append({"arn": arn, "reason": "MISSING"})
                else:
                    found.append({**_brief(svc, dep), "rollback": {"reason": dep.get("rolloutStateReason", "")}
                                  if _status_of(dep).startswith("ROLLBACK") else None})
            return 200, {"serviceDeployments": [{k: v for k, v in f.items() if v is not None} for f in found],
                         "failures": failures}
        if operation == "StopServiceDeployment":
            arn = body.get("serviceDeploymentArn", "")
            svc, dep = _find_deployment(backend, arn)
            if dep is None:
                return 400, {"__type": "ServiceDeploymentNotFoundException",
                             "message": f"The service deployment {arn} does not exist."}
            if _status_of(dep) not in ("PENDING", "IN_PROGRESS"):  # a superseded one is STOPPED
                return 400, {"__type": "ConflictException",
                             "message": f"The service deployment {arn} is not in progress."}
            if (body.get("stopType") or "ROLLBACK") != "ROLLBACK":
                return 400, {"__type": "InvalidParameterException", "message": "stopType must be ROLLBACK."}
            if len(svc.deployments) < 2:
                return 400, {"__type": "ConflictException",
                             "message": "There is no previous deployment to roll back to."}
            dep["_mvp_rolled_back"] = True
            _fail_deployment(backend, svc, dep, "stopped: rollback requested.", rollback=True,
                             reason=f"ECS deployment {dep['id']} stopped: rollback requested.")
            return 200, {"serviceDeploymentArn": arn}
    return 400, {"__type": "UnknownOperationException", "message": operation}


# --- the server ---------------------------------------------------------------------------------------


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class App:
    """moto's WSGI application, with our own paths and ECS operations answered first."""

    def __init__(self, moto_app):
        self.moto_app = moto_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not _loopback(environ.get("REMOTE_ADDR", "")):
            return self._reply(start_response, 403, {"message": "loopback only"})
        if path == FAIL_PATH:
            return self._fail(environ, start_response)
        if path == "/moto-api/reset":
            with _lock:
                _marks.clear()
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(ECS_TARGET) and target[len(ECS_TARGET):] in (
                "ListServiceDeployments", "DescribeServiceDeployments", "StopServiceDeployment"):
            body = self._body(environ)
            region = _region(environ)
            status, data = answer_ecs(target[len(ECS_TARGET):], body, region)
            return self._reply(start_response, status, data, "application/x-amz-json-1.1")
        return self.moto_app(environ, start_response)

    @staticmethod
    def _body(environ) -> dict:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            return json.loads(environ["wsgi.input"].read(length) or b"{}")
        except (ValueError, OSError):
            return {}

    def _fail(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            with _lock:
                marks = [{"cluster": c, "service": s, "reason": r} for (c, s), (r, _) in sorted(_marks.items())]
            return self._reply(start_response, 200, {"marks": marks})
        body = self._body(environ)
        try:
            set_mark(str(body["cluster"]), str(body["service"]), str(body.get("reason") or ""))
        except (KeyError, ValueError) as exc:
            return self._reply(start_response, 400, {"message": str(exc)})
        return self._reply(start_response, 200, {"ok": True})

    @staticmethod
    def _reply(start_response, status: int, data: dict, content_type: str = "application/json"):
        payload = json.dumps(data, default=str).encode()
        text = {200: "OK", 400: "Bad Request", 403: "Forbidden"}.get(status, "Error")
        start_response(f"{status} {text}", [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload]


def _region(environ) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    # "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/ecs/aws4_request, ..."
    try:
        return auth.split("Credential=", 1)[1].split("/")[2]
    except IndexError:
        return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class Server:
    """moto on `host:port` in this process, and the thread that drives its ECS services."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tick: float | None = None):
        if not _loopback(host):
            raise ValueError(f"{host} is not a loopback address: the sandbox listens on loopback only")
        self.host, self.port = host, port
        self.tick = tick if tick is not None else get_tick()
        self._stop = threading.Event()
        self._server = None
        self._threads: list[threading.Thread] = []

    def start(self) -> "Server":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        install()
        app = App(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler)
        self.port = self._server.server_address[1]
        for target in (self._server.serve_forever, self._drive):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _drive(self) -> None:
        while not self._stop.wait(self.tick):
            tick()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mvp_tasks.sandbox_ecs", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server = Server(args.host, args.port).start()
    print(f"sandbox_ecs: moto with ECS rollouts on http://{server.host}:{server.port} (tick {server.tick} s)", flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
