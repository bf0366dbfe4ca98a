"""Discovery of an app's ECS cluster and service (`mvp_tasks.aws.discovery`), each step of its
order, against botocore's Stubber: a real `World` (its memo, its `cluster_stack`) and real
`Stacks`, with every CloudFormation call queued exactly (a call not queued fails the test), so
the tests also show which calls each step costs, and that outputs that answer cost none.

Physical ids as CloudFormation gives them in ListStackResources (and moto 5.2 likewise): an
`AWS::ECS::Cluster`'s is the cluster's name, an `AWS::ECS::Service`'s is the service's ARN
(`arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`; `service/NAME` in the old ARN format).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from botocore.stub import Stubber
from stubs import isolate_from_aws, log_calls, make_client

from mvp_tasks.aws import discovery
from mvp_tasks.aws.stacks import StackInfo, Stacks
from mvp_tasks.errors import AwsError, UsageError
from mvp_tasks.settings import ClusterSettings
from mvp_tasks.world import World

ACCOUNT = "123456789012"
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)
CLUSTER = ClusterSettings(name="stage", template="infrastructure/fargate_cluster.yml", protected=False,
                          promote_from="", tag="stage")
APP = "shop-stage"


def stack_id(name: str, n: int = 1) -> str:
    return f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/{name}/0a1b2c3d-4e5f-11ef-8a3b-0e6f1c2d3a4{n}"


def cluster_arn(name: str) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{name}"


def service_arn(cluster: str, name: str) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/{cluster}/{name}"


def stack_data(name: str, outputs: dict[str, str] | None = None, status: str = "CREATE_COMPLETE") -> dict:
    """One entry of DescribeStacks' `Stacks`."""
    data = {"StackName": name, "StackId": stack_id(name), "CreationTime": T0, "StackStatus": status}
    if outputs:
        data["Outputs"] = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    return data


def info(name: str, outputs: dict[str, str] | None = None, *, updated: datetime | None = None,
         status: str = "CREATE_COMPLETE") -> StackInfo:
    """A stack as the caller has just read it."""
    return StackInfo(name=name, stack_id=stack_id(name), status=status, outputs=dict(outputs or {}), created=T0,
                     last_updated=updated)


def resource(logical_id: str, resource_type: str, physical_id: str, status: str = "CREATE_COMPLETE") -> dict:
    """One entry of ListStackResources' `StackResourceSummaries`."""
    data = {"LogicalResourceId": logical_id, "ResourceType": resource_type, "LastUpdatedTimestamp": T0,
            "ResourceStatus": status}
    if physical_id:
        data["PhysicalResourceId"] = physical_id
    return data


NETWORK = [resource("Vpc", "AWS::EC2::VPC", "vpc-0a1b2c3d"),
           resource("PublicSubnetOne", "AWS::EC2::Subnet", "subnet-0a1b2c3d")]


@pytest.fixture
def cfn(monkeypatch):
    """The stubbed CloudFormation client, and the calls it was asked (operation, parameters)."""
    isolate_from_aws(monkeypatch)
    client = make_client("cloudformation")
    calls: list = []
    log_calls(client, calls)
    with Stubber(client) as stubber:
        yield SimpleNamespace(client=client, stub=stubber, calls=calls)
        stubber.assert_no_pending_responses()


@pytest.fixture
def world(cfn):
    return World(SimpleNamespace(), reporter=None, aws=SimpleNamespace(cloudformation=cfn.client))


def expect_describe(cfn, name: str, outputs: dict[str, str] | None = None) -> None:
    cfn.stub.add_response("describe_stacks", {"Stacks": [stack_data(name, outputs)]}, {"StackName": name})


def expect_resources(cfn, name: str, *resources: dict, next_token: str = "", token: str = "") -> None:
    response = {"StackResourceSummaries": list(resources)}
    if next_token:
        response["NextToken"] = next_token
    params = {"StackName": stack_id(name)}
    if token:
        params["NextToken"] = token
    cfn.stub.add_response("list_stack_resources", response, params)


def operations(cfn) -> list[str]:
    return [name for name, _ in cfn.calls]


# --- names and ARNs ------------------------------------------------------------------------------


@pytest.mark.parametrize("value,kind,name", [
    ("stage", "cluster", "stage"),
    (cluster_arn("stage-ECSCluster"), "cluster", "stage-ECSCluster"),
    (service_arn("stage", "shop-stage-Service-1AB2C3"), "service", "shop-stage-Service-1AB2C3"),
    (f"arn:aws:ecs:us-east-1:{ACCOUNT}:service/old_format", "service", "old_format"),
    (f"arn:aws-cn:ecs:cn-north-1:{ACCOUNT}:cluster/china", "cluster", "china"),
    (cluster_arn("stage"), "service", ""),  # a cluster's ARN does not name a service
    (f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:stage", "cluster", ""),  # nor does another service's ARN
    ("", "cluster", ""),
    ("  stage  ", "cluster", "stage"),
    ("not a name", "cluster", ""),
    ("subnet-1,subnet-2", "cluster", ""),
])
def test_ecs_name_of_a_name_or_an_arn(value, kind, name):
    assert discovery.ecs_name(value, kind) == name


def test_outputs_are_matched_ignoring_case_best_key_first():
    outputs = {"ecsclusterarn": cluster_arn("from-arn"), "Cluster": "from-cluster", "VpcId": "vpc-1"}
    assert discovery.from_outputs(outputs, discovery.CLUSTER_OUTPUTS, "cluster") == "from-cluster"
    assert discovery.from_outputs({"ECSClusterArn": cluster_arn("c1")}, discovery.CLUSTER_OUTPUTS, "cluster") == "c1"
    # An output under a known key that names no ECS resource of the kind is passed over.
    assert discovery.from_outputs({"ClusterName": "", "ClusterArn": cluster_arn("c2")},
                                  discovery.CLUSTER_OUTPUTS, "cluster") == "c2"
    assert discovery.from_outputs({"Service": service_arn("c", "svc")}, discovery.SERVICE_OUTPUTS, "service") == "svc"
    assert discovery.from_outputs({"VpcId": "vpc-1"}, discovery.SERVICE_OUTPUTS, "service") == ""


# --- the ECS cluster: 1. the app stack's outputs --------------------------------------------------


def test_app_outputs_that_name_both_cost_no_call(cfn, world):
    stack = info(APP, {"ClusterName": "stage", "ServiceName": APP})
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", APP)
    assert cfn.calls == []


def test_app_outputs_under_other_keys_and_as_arns(cfn, world):
    stack = info(APP, {"EcsCluster": cluster_arn("shared"), "ServiceArn": service_arn("shared", "web")})
    assert discovery.service_names(world, stack, CLUSTER) == ("shared", "web")
    assert cfn.calls == []


# --- 2. the cluster stack's outputs ---------------------------------------------------------------


def test_cluster_from_the_cluster_stacks_outputs(cfn, world):
    expect_describe(cfn, "stage", {"ClusterArn": cluster_arn("stage-ecs"), "VpcId": "vpc-1"})
    stack = info(APP, {"ServiceName": APP})
    assert discovery.service_names(world, stack, CLUSTER) == ("stage-ecs", APP)
    assert operations(cfn) == ["DescribeStacks"]  # no resources listed: the outputs answered


# --- 3. the cluster stack's AWS::ECS::Cluster resource --------------------------------------------


def test_cluster_from_the_cluster_stacks_ecs_cluster_resource(cfn, world):
    expect_describe(cfn, "stage", {"VpcId": "vpc-1", "Subnets": "subnet-1,subnet-2"})
    expect_resources(cfn, "stage", *NETWORK, resource("ECSCluster", "AWS::ECS::Cluster", "stage-ECSCluster"))
    stack = info(APP, {"ServiceName": APP})
    assert discovery.service_names(world, stack, CLUSTER) == ("stage-ECSCluster", APP)
    assert operations(cfn) == ["DescribeStacks", "ListStackResources"]


def test_cluster_resource_on_every_page_and_as_an_arn(cfn, world):
    expect_describe(cfn, "stage")
    expect_resources(cfn, "stage", *NETWORK, next_token="page-2")
    expect_resources(cfn, "stage", resource("Cluster", "AWS::ECS::Cluster", cluster_arn("the-cluster")),
                     token="page-2")
    assert discovery.cluster_ecs_cluster(world, CLUSTER) == "the-cluster"


def test_several_ecs_clusters_the_one_named_after_the_stack_else_refused(cfn, world):
    expect_describe(cfn, "stage")
    expect_resources(cfn, "stage", resource("Batch", "AWS::ECS::Cluster", "stage-batch"),
                     resource("Main", "AWS::ECS::Cluster", "stage"))
    assert discovery.cluster_ecs_cluster(world, CLUSTER) == "stage"

    other = info("other")
    expect_resources(cfn, "other", resource("A", "AWS::ECS::Cluster", "a"), resource("B", "AWS::ECS::Cluster", "b"))
    with pytest.raises(UsageError) as caught:
        discovery.cluster_ecs_cluster(world, CLUSTER, other)
    assert str(caught.value) == ("stack other holds 2 ECS clusters (a, b): which one is the app's is not clear "
                                 "(give its template a ClusterName output naming it)")


# --- 4. the cluster stack's name ------------------------------------------------------------------


def test_cluster_stack_without_an_ecs_cluster_gives_its_name(cfn, world):
    expect_describe(cfn, "stage", {"VpcId": "vpc-1"})
    expect_resources(cfn, "stage", *NETWORK,
                     resource("Gone", "AWS::ECS::Cluster", "old-cluster", status="DELETE_COMPLETE"),
                     resource("Failed", "AWS::ECS::Cluster", "", status="CREATE_FAILED"))
    assert discovery.cluster_ecs_cluster(world, CLUSTER) == CLUSTER.stack_name == "stage"


def test_missing_cluster_stack_gives_its_name(cfn, world):
    cfn.stub.add_client_error("describe_stacks", service_error_code="ValidationError",
                              service_message="Stack with id stage does not exist", http_status_code=400,
                              expected_params={"StackName": "stage"})
    stack = info(APP, {"ServiceName": APP})
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", APP)


def test_a_failing_read_is_not_taken_for_an_answer(cfn, world):
    expect_describe(cfn, "stage")
    cfn.stub.add_client_error("list_stack_resources", service_error_code="AccessDenied",
                              service_message="not allowed: cloudformation:ListStackResources",
                              http_status_code=403, expected_params={"StackName": stack_id("stage")})
    with pytest.raises(AwsError, match="ListStackResources"):
        discovery.cluster_ecs_cluster(world, CLUSTER)


# --- the service: outputs, its AWS::ECS::Service resource, the stack's name -------------------------


def test_service_from_the_app_stacks_service_resource(cfn, world):
    stack = info(APP, {"ClusterName": "stage"})
    expect_resources(cfn, APP,
                     resource("TaskDefinition", "AWS::ECS::TaskDefinition",
                              f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/shop:1"),
                     resource("Service", "AWS::ECS::Service", service_arn("stage", "shop-stage-Service-9ZY8X7")))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", "shop-stage-Service-9ZY8X7")
    assert operations(cfn) == ["ListStackResources"]


def test_app_stack_with_no_outputs_at_all(cfn, world):
    """A third-party pair: nothing in either stack's outputs; one ListStackResources each."""
    stack = info(APP)
    expect_describe(cfn, "stage", {"VPC": "vpc-1"})
    expect_resources(cfn, "stage", *NETWORK, resource("ECSCluster", "AWS::ECS::Cluster", "stage-ECSCluster"))
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service",
                                        service_arn("stage-ECSCluster", "shop-stage-Service-1AB2C3")))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage-ECSCluster", "shop-stage-Service-1AB2C3")


def test_several_services_the_one_named_after_the_stack_else_refused(cfn, world):
    stack = info(APP, {"ClusterName": "stage"})
    expect_resources(cfn, APP, resource("Worker", "AWS::ECS::Service", service_arn("stage", "worker")),
                     resource("Web", "AWS::ECS::Service", service_arn("stage", APP)))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", APP)

    two = info("two", {"ClusterName": "stage"})
    expect_resources(cfn, "two", resource("A", "AWS::ECS::Service", service_arn("stage", "a")),
                     resource("B", "AWS::ECS::Service", service_arn("stage", "b")))
    with pytest.raises(UsageError, match=r"stack two holds 2 ECS services \(a, b\).*ServiceName output"):
        discovery.service_names(world, two, CLUSTER)


def test_service_without_resource_is_the_stacks_name(cfn, world):
    stack = info(APP, {"ClusterName": "stage"})
    expect_resources(cfn, APP, resource("LogGroup", "AWS::Logs::LogGroup", "/shop/stage"))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", APP)


# --- once per run, per version of a stack -----------------------------------------------------------


def test_resources_are_read_once_per_run_and_again_after_the_stack_changed(cfn, world):
    stack = info(APP, {"ClusterName": "stage"})
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", "svc-1")))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", "svc-1")
    assert discovery.service_names(world, info(APP, {"ClusterName": "stage"}), CLUSTER) == ("stage", "svc-1")
    assert operations(cfn) == ["ListStackResources"]

    # Updated in the same run (the service replaced): its new last-updated time reads it anew.
    updated = info(APP, {"ClusterName": "stage"}, updated=T0 + timedelta(minutes=5), status="UPDATE_COMPLETE")
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", "svc-2")),
                     resource("Service", "AWS::ECS::Service", service_arn("stage", "svc-1"),
                              status="DELETE_COMPLETE"))
    assert discovery.service_names(world, updated, CLUSTER) == ("stage", "svc-2")
    assert operations(cfn) == ["ListStackResources", "ListStackResources"]


def test_fresh_reads_again_a_stack_that_looks_the_same(cfn, world):
    """After this run changed the stack: moto sets no LastUpdatedTime, so an update from
    UPDATE_COMPLETE to UPDATE_COMPLETE looks the same by id, time and status."""
    stack = info(APP, {"ClusterName": "stage"}, status="UPDATE_COMPLETE")
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", "before")))
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", "before")
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", "after")))
    assert discovery.service_names(world, stack, CLUSTER, fresh=True) == ("stage", "after")
    assert discovery.service_names(world, stack, CLUSTER) == ("stage", "after")  # and kept
    assert operations(cfn) == ["ListStackResources", "ListStackResources"]


class _Services:
    """ECS as the apply steps use it: the services they roll and wait on, (ECS cluster, service)."""

    def __init__(self):
        self.rolled, self.waited = [], []

    def force_new_deployment(self, ecs_cluster: str, service: str) -> str:
        self.rolled.append((ecs_cluster, service))
        return "ecs-svc/2"

    def wait_for_rollout(self, ecs_cluster: str, service: str, **kw):
        self.waited.append((ecs_cluster, service, kw.get("deployment_id", "")))


@pytest.mark.parametrize("after", [
    # moto: no LastUpdatedTime, UPDATE_COMPLETE before and after: only `fresh` tells the update apart.
    pytest.param({"StackStatus": "UPDATE_COMPLETE"}, id="looks-the-same"),
    # AWS: the update sets a new LastUpdatedTime, so the stack is another version of itself.
    pytest.param({"StackStatus": "UPDATE_COMPLETE", "LastUpdatedTime": T0 + timedelta(minutes=5)},
                 id="last-updated-moved"),
    # The update added an output naming the service: it answers, and no resources are read.
    pytest.param({"StackStatus": "UPDATE_COMPLETE",
                  "Outputs": [{"OutputKey": "ServiceName", "OutputValue": "svc-new"}]}, id="new-output"),
])
def test_after_an_ensure_stack_update_the_rollout_follows_the_new_service_not_the_cached_one(cfn, after):
    """The run read the app stack before the update (its service `svc-old` memoized); the update
    replaced the service. `apply_ensure_stack` then waits on the new one and the RollService after
    it (planned without names, as for an update) rolls the new one too, from the fresh answer."""
    from mvp_tasks.apply.steps import TargetRun, apply_step
    from mvp_tasks.plan.steps import EnsureStack, RollService, TargetPlan

    services = _Services()
    world = World(SimpleNamespace(wait_timeout=60, poll_interval=0.5),
                  reporter=SimpleNamespace(event=lambda *a, **k: None), aws=SimpleNamespace(cloudformation=cfn.client))
    world.services = lambda: services
    before = info(APP, {"ClusterName": "stage"}, status="UPDATE_COMPLETE")
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", "svc-old")))
    assert discovery.service_names(world, before, CLUSTER) == ("stage", "svc-old")  # as planning read it

    described = stack_data(APP, {"ClusterName": "stage"})
    described.update(after, Outputs=described["Outputs"] + after.get("Outputs", []))
    updated = {"StackId": stack_id(APP), "EventId": "e-2", "StackName": APP, "LogicalResourceId": APP,
               "ResourceType": "AWS::CloudFormation::Stack", "Timestamp": T0, "ResourceStatus": "UPDATE_COMPLETE"}
    earlier = dict(updated, EventId="e-1", ResourceStatus="UPDATE_IN_PROGRESS")
    cfn.stub.add_response("describe_stack_events", {"StackEvents": [earlier]}, {"StackName": APP})
    cfn.stub.add_response("execute_change_set", {}, {"StackName": APP, "ChangeSetName": "mvp-cs"})
    cfn.stub.add_response("describe_stacks", {"Stacks": [described]}, {"StackName": APP})  # waiting: settled
    cfn.stub.add_response("describe_stack_events", {"StackEvents": [updated, earlier]}, {"StackName": APP})
    cfn.stub.add_response("describe_stacks", {"Stacks": [described]}, {"StackName": APP})  # read after it
    if "Outputs" not in after:
        expect_resources(cfn, APP, resource("NewService", "AWS::ECS::Service", service_arn("stage", "svc-new")),
                         resource("Service", "AWS::ECS::Service", service_arn("stage", "svc-old"),
                                  status="DELETE_COMPLETE"))
    cfn.stub.add_response("describe_stacks", {"Stacks": [described]}, {"StackName": APP})  # RollService's read

    ensure = EnsureStack(APP, template=None, parameters={}, tags={}, action="update", change_set="mvp-cs",
                         service=True)
    roll = RollService(APP)
    plan = TargetPlan(f"shop@{CLUSTER.name}", project="shop", cluster=CLUSTER.name, action="deploy",
                      steps=[ensure, roll])
    guard = SimpleNamespace(lock=lambda: None, started_in_aws=lambda *a: None, settled_in_aws=lambda *a: None)
    run = TargetRun(world, plan, guard, CLUSTER)
    for step in plan.steps:
        apply_step(run, step)

    assert services.waited == [("stage", "svc-new", ""), ("stage", "svc-new", "ecs-svc/2")]
    assert services.rolled == [("stage", "svc-new")]
    listed = 1 if "Outputs" in after else 2  # the planning read, then the one after the update
    assert operations(cfn).count("ListStackResources") == listed, operations(cfn)
    # Kept: asking again in the same run costs nothing and still names the new service.
    assert discovery.service_names(world, StackInfo.from_api(described), CLUSTER) == ("stage", "svc-new")


def test_after_the_cluster_stack_changes_the_run_reads_it_again(cfn):
    """fleet.up applies a cluster before planning the apps it creates: they must not see the
    cluster stack as it was read before its change."""
    from mvp_tasks.apply.steps import TargetRun, apply_step
    from mvp_tasks.plan.steps import EnsureStack, TargetPlan

    world = World(SimpleNamespace(wait_timeout=60, poll_interval=0.5), reporter=None,
                  aws=SimpleNamespace(cloudformation=cfn.client))
    key = ("cluster stack", CLUSTER.name)
    assert world.memo.get(key, lambda: "as read before") == "as read before"
    cfn.stub.add_response("update_termination_protection", {"StackId": stack_id("stage")},
                          {"StackName": "stage", "EnableTerminationProtection": True})
    step = EnsureStack("stage", template=None, parameters={}, tags={}, action="protect", protect=True)
    guard = SimpleNamespace(lock=lambda: None, started_in_aws=lambda *a: None, settled_in_aws=lambda *a: None)
    run = TargetRun(world, TargetPlan("stage", kind="cluster", cluster="stage", steps=[step]), guard, CLUSTER)
    apply_step(run, step)
    assert world.memo.get(key, lambda: "read again") == "read again"


def test_the_cluster_stack_is_read_once_for_every_app(cfn, world):
    expect_describe(cfn, "stage")
    expect_resources(cfn, "stage", resource("ECSCluster", "AWS::ECS::Cluster", "stage-ECSCluster"))
    for app in ("a-stage", "b-stage", "c-stage"):
        assert discovery.service_names(world, info(app, {"ServiceName": app}), CLUSTER) == ("stage-ECSCluster", app)
    assert operations(cfn) == ["DescribeStacks", "ListStackResources"]


def test_list_stack_resources_reads_every_page(cfn):
    expect_resources(cfn, "stage", *NETWORK, next_token="t2")
    expect_resources(cfn, "stage", resource("ECSCluster", "AWS::ECS::Cluster", "c"), token="t2")
    found = Stacks(cfn.client).list_stack_resources(stack_id("stage"))
    assert [(r.logical_id, r.resource_type, r.physical_id, r.status) for r in found] == [
        ("Vpc", "AWS::EC2::VPC", "vpc-0a1b2c3d", "CREATE_COMPLETE"),
        ("PublicSubnetOne", "AWS::EC2::Subnet", "subnet-0a1b2c3d", "CREATE_COMPLETE"),
        ("ECSCluster", "AWS::ECS::Cluster", "c", "CREATE_COMPLETE"),
    ]


# --- the planner: the app template's ClusterName parameter ------------------------------------------


class _Stacks:
    """Stacks as plain data, counting the reads discovery makes."""

    def __init__(self, stacks: dict[str, StackInfo], resources: dict[str, list]):
        self.stacks, self.resources, self.listed = stacks, resources, []

    def get_stack(self, name: str):
        return self.stacks.get(name)

    def list_stack_resources(self, name: str):
        from mvp_tasks.aws.stacks import StackResource

        self.listed.append(name)
        return [StackResource(*r) for r in self.resources.get(name, [])]


class _World(World):
    def __init__(self, settings, stacks: _Stacks):
        super().__init__(settings, reporter=None, aws=None)
        self._stacks = stacks
        self.registry = SimpleNamespace(ref=lambda repository, tag: f"registry.test/{repository}:{tag}")

    registry = None  # shadows World.registry (a property)

    def stacks(self):
        return self._stacks


def _settings(tmp_path, app_template: str):
    from mvp_tasks.settings import load_settings

    (tmp_path / "projects" / "shop").mkdir(parents=True)
    (tmp_path / "projects" / "shop" / "deploy.yml").write_text(app_template, encoding="utf-8")
    (tmp_path / "cluster.yml").write_text("Resources: {}\n", encoding="utf-8")
    return load_settings({"mvp": {"region": "us-east-1", "registry": "registry.test", "default_cluster": "stage",
                                  "clusters": {"stage": {"template": "cluster.yml"}},
                                  "projects": {"shop": {"clusters": ["stage"]}}}}, tmp_path)


APP_TAKING_CLUSTER_NAME = """\
Parameters:
  ClusterName: {Type: String}
  Image: {Type: String}
Resources:
  LogGroup: {Type: 'AWS::Logs::LogGroup'}
"""


@pytest.mark.parametrize("outputs,resources,expected,listed", [
    ({"ClusterName": "from-output", "VpcId": "vpc-1"}, [], "from-output", []),
    ({"VpcId": "vpc-1"}, [("ECSCluster", "AWS::ECS::Cluster", "stage-ECSCluster", "CREATE_COMPLETE")],
     "stage-ECSCluster", ["stage"]),
    ({"VpcId": "vpc-1"}, [("Vpc", "AWS::EC2::VPC", "vpc-1", "CREATE_COMPLETE")], "stage", ["stage"]),
])
def test_app_stack_step_fills_cluster_name_from_the_cluster_stack(tmp_path, outputs, resources, expected, listed):
    from mvp_tasks.plan import planner

    settings = _settings(tmp_path, APP_TAKING_CLUSTER_NAME)
    stacks = _Stacks({"stage": info("stage", outputs)}, {stack_id("stage"): resources})
    world = _World(settings, stacks)
    step, stack = planner.app_stack_step(world, settings.projects["shop"], settings.clusters["stage"], "c" * 40,
                                         stack=None)
    assert stack is None and step.action == "create"
    assert dict(step.parameters) == {"ClusterName": expected, "Image": "registry.test/shop:stage"}
    assert [name.split("/")[-2] for name in stacks.listed] == listed


def test_app_stack_step_reads_nothing_for_a_template_without_cluster_name(tmp_path):
    from mvp_tasks.plan import planner

    settings = _settings(tmp_path, "Parameters:\n  Image: {Type: String}\nResources:\n"
                                   "  LogGroup: {Type: 'AWS::Logs::LogGroup'}\n")
    stacks = _Stacks({"stage": info("stage", {"VpcId": "vpc-1"})}, {})
    world = _World(settings, stacks)
    step, _ = planner.app_stack_step(world, settings.projects["shop"], settings.clusters["stage"], "c" * 40,
                                     stack=None)
    assert dict(step.parameters) == {"Image": "registry.test/shop:stage"}
    assert stacks.listed == []



# --- the log group: outputs, its AWS::Logs::LogGroup resource, the running task definition ---------


def log_group_arn(name: str) -> str:
    return f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{name}:*"


def td_arn(revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/{APP}:{revision}"


@pytest.fixture
def ecs(monkeypatch, cfn):
    """The stubbed ECS client beside `cfn`'s CloudFormation one; the calls of both in `cfn.calls`."""
    client = make_client("ecs")
    log_calls(client, cfn.calls)
    with Stubber(client) as stubber:
        yield SimpleNamespace(client=client, stub=stubber)
        stubber.assert_no_pending_responses()


@pytest.fixture
def ecs_world(cfn, ecs):
    return World(SimpleNamespace(), reporter=None, aws=SimpleNamespace(cloudformation=cfn.client, ecs=ecs.client))


def expect_running(ecs, service: str, revision: int, containers: list[dict]) -> None:
    """DescribeServices of `service` (in ECS cluster stage), whose primary deployment runs revision
    `revision` of the task definition, then DescribeTaskDefinition of it, with `containers`."""
    deployment = {"id": "ecs-svc/1", "status": "PRIMARY", "taskDefinition": td_arn(revision), "desiredCount": 1,
                  "runningCount": 1, "pendingCount": 0, "rolloutState": "COMPLETED"}
    ecs.stub.add_response("describe_services", {"services": [{
        "serviceName": service, "serviceArn": service_arn("stage", service), "status": "ACTIVE", "desiredCount": 1,
        "runningCount": 1, "pendingCount": 0, "taskDefinition": td_arn(revision), "deployments": [deployment]}]},
        {"cluster": "stage", "services": [service]})
    ecs.stub.add_response("describe_task_definition", {"taskDefinition": {
        "taskDefinitionArn": td_arn(revision), "family": APP, "revision": revision,
        "containerDefinitions": containers}}, {"taskDefinition": td_arn(revision)})


def awslogs(name: str, group: str, essential: bool = True) -> dict:
    return {"name": name, "image": f"127.0.0.1:5000/{name}:stage", "essential": essential,
            "logConfiguration": {"logDriver": "awslogs",
                                 "options": {"awslogs-group": group, "awslogs-stream-prefix": name}}}


@pytest.mark.parametrize("outputs,group", [
    ({"LogGroupName": "/ecs/shop-stage"}, "/ecs/shop-stage"),
    ({"loggroup": "shop-stage"}, "shop-stage"),  # ignoring case
    ({"LogGroupArn": log_group_arn("/aws/ecs/shop")}, "/aws/ecs/shop"),  # an ARN gives its name
    ({"LogGroup": "", "LogGroupName": "/best/first", "Url": "http://x"}, "/best/first"),
])
def test_log_group_from_the_app_stacks_outputs_costs_no_call(cfn, world, outputs, group):
    assert discovery.log_group(world, info(APP, outputs), CLUSTER) == group
    assert cfn.calls == []


def test_log_group_from_the_app_stacks_log_group_resource(cfn, world):
    """A template with no outputs at all that names its log group after the stack."""
    expect_resources(cfn, APP, resource("LogGroup", "AWS::Logs::LogGroup", APP),
                     resource("Service", "AWS::ECS::Service", service_arn("stage", "shop-stage-Service-1AB2C3")))
    assert discovery.log_group(world, info(APP), CLUSTER) == APP
    assert operations(cfn) == ["ListStackResources"]
    # The resources read for the log group answer the service too: no second read.
    _, service = discovery.service_names(world, info(APP, {"ClusterName": "stage"}), CLUSTER)
    assert service == "shop-stage-Service-1AB2C3"
    assert operations(cfn) == ["ListStackResources"]


def test_log_group_from_the_running_task_definition(cfn, ecs, ecs_world):
    """No output and no log group in the stack (made outside it): the awslogs-group the service's
    running containers write to, the essential container's first."""
    stack = info(APP, {"ClusterName": "stage", "ServiceName": APP})
    expect_resources(cfn, APP, resource("Service", "AWS::ECS::Service", service_arn("stage", APP)))
    expect_running(ecs, APP, 7, [awslogs("log-router", "/firelens/router", essential=False),
                                 {"name": "sidecar", "image": "busybox", "essential": True},
                                 awslogs("web", log_group_arn("/made/outside"))])
    assert discovery.log_group(ecs_world, stack, CLUSTER) == "/made/outside"
    assert operations(cfn) == ["ListStackResources", "DescribeServices", "DescribeTaskDefinition"]
    # The task definition is kept for the run (status reads it too).
    assert discovery.get_task_definition(ecs_world, td_arn(7))["revision"] == 7
    assert operations(cfn).count("DescribeTaskDefinition") == 1


def test_several_log_groups_the_one_the_containers_write_to_else_refused(cfn, ecs, ecs_world):
    stack = info(APP, {"ClusterName": "stage", "ServiceName": APP})
    expect_resources(cfn, APP, resource("Access", "AWS::Logs::LogGroup", "/shop/access"),
                     resource("App", "AWS::Logs::LogGroup", "/shop/app"))
    expect_running(ecs, APP, 3, [awslogs("web", "/shop/app")])
    assert discovery.log_group(ecs_world, stack, CLUSTER) == "/shop/app"

    two = info("two", {"ClusterName": "stage", "ServiceName": "two"})
    expect_resources(cfn, "two", resource("A", "AWS::Logs::LogGroup", "/a"), resource("B", "AWS::Logs::LogGroup", "/b"))
    expect_running(ecs, "two", 4, [awslogs("web", "/elsewhere")])
    with pytest.raises(UsageError) as caught:
        discovery.log_group(ecs_world, two, CLUSTER)
    assert str(caught.value) == ("stack two holds 2 log groups (/a, /b): which one is the app's is not clear "
                                 "(give its template a LogGroupName output naming it)")


def test_no_log_group_anywhere_is_one_line_with_the_fix(cfn, ecs, ecs_world):
    stack = info(APP, {"ClusterName": "stage", "ServiceName": APP})
    expect_resources(cfn, APP, *NETWORK)
    expect_running(ecs, APP, 1, [{"name": "web", "image": "nginx", "essential": True,
                                  "logConfiguration": {"logDriver": "json-file", "options": {}}}])
    with pytest.raises(UsageError) as caught:
        discovery.log_group(ecs_world, stack, CLUSTER)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"cannot find the log group of stack {APP}: no LogGroupName output")
    assert caught.value.hint == "give its template a LogGroupName output naming it"


@pytest.mark.parametrize("value,name", [
    ("/ecs/shop-stage", "/ecs/shop-stage"),
    (log_group_arn("/aws/ecs/shop"), "/aws/ecs/shop"),
    (f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:plain", "plain"),
    ("arn:aws:s3:::bucket", ""),
    ("has space", ""),
    ("", ""),
])
def test_log_group_name_of_a_name_or_an_arn(value, name):
    assert discovery.log_group_name(value) == name
