"""CloudFormation's service role (`mvp.clusters.NAME.cfn_role`, `mvp.state.cfn_role`): validated
once; threaded from the planners through the steps to every CreateStack, CreateChangeSet and
DeleteStack, where it is sent as `RoleARN` (botocore's Stubber matches each request exactly, so a
missing or a stray `RoleARN` fails the test). docs/deploy-role.md says why.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from botocore.stub import Stubber
from stubs import FakeClock, isolate_from_aws, make_client, make_clocked_world

import test_planner as tp
import test_stacks_stubber as ts
from mvp_tasks.apply.guard import Guard
from mvp_tasks.apply.steps import TargetRun, apply_step
from mvp_tasks.aws.stacks import CAPABILITIES, Change, Stacks
from mvp_tasks.errors import ConfigError
from mvp_tasks.plan import planner
from mvp_tasks.plan.steps import DeleteStack, EnsureStack, EnsureStore, TargetPlan
from mvp_tasks.settings import ClusterSettings, load_settings

ROLE = "arn:aws:iam::123456789012:role/mvp-cloudformation"
PROD_ROLE = "arn:aws:iam::123456789012:role/deploy/mvp-cloudformation-prod"
STORE_ROLE = "arn:aws:iam::123456789012:role/mvp-cloudformation-store"


# --- settings ------------------------------------------------------------------------------------


def settings_with(stage: str = "", prod: str = "", state: str | None = None):
    clusters = {"stage": {"template": tp.CLUSTER_TEMPLATE, "cfn_role": stage},
                "prod": {"template": tp.CLUSTER_TEMPLATE, "protected": True, "promote_from": "stage",
                         "cfn_role": prod}}
    over = {"clusters": clusters}
    if state is not None:
        over["state"] = {"cfn_role": state}
    return load_settings(tp.config(**over), tp.ROOT)


def test_no_role_by_default():
    settings = load_settings(tp.config(), tp.ROOT)
    assert {c.cfn_role for c in settings.clusters.values()} == {""}
    assert settings.state.cfn_role == ""


def test_each_cluster_has_its_own_role_and_the_store_takes_the_default_clusters():
    settings = settings_with(ROLE, PROD_ROLE)
    assert (settings.clusters["stage"].cfn_role, settings.clusters["prod"].cfn_role) == (ROLE, PROD_ROLE)
    assert settings.state.cfn_role == ROLE  # default_cluster is stage
    assert settings_with(ROLE, PROD_ROLE, state=STORE_ROLE).state.cfn_role == STORE_ROLE


@pytest.mark.parametrize("value", [
    "mvp-cloudformation",                                          # a name, not an ARN
    "arn:aws:iam::123456789012:user/deployer",                     # a user
    "arn:aws:iam::aws:policy/AdministratorAccess",                 # a policy
    "arn:aws:iam::12345:role/mvp-cloudformation",                  # not a 12-digit account
    "arn:aws:iam::123456789012:role/",                             # no name
    "arn:aws:iam::123456789012:role/mvp cloudformation",           # a space
    "arn:aws:iam::123456789012:role/mvp-cloudformation\n",         # a trailing newline
    "arn:aws:sts::123456789012:assumed-role/mvp-cloudformation/x",  # a session
])
def test_a_role_that_is_not_an_iam_role_arn_is_one_error_naming_the_key(value):
    with pytest.raises(ConfigError) as error:
        settings_with(prod=value)
    assert str(error.value).startswith(f"config mvp.clusters.prod.cfn_role: {value!r} is not an IAM role ARN")
    with pytest.raises(ConfigError, match=r"^config mvp\.state\.cfn_role: "):
        settings_with(state=value)


def test_role_arns_of_other_partitions_and_with_paths_are_accepted():
    for arn in (PROD_ROLE, "arn:aws-cn:iam::123456789012:role/a/b/c_d+e=f,g.h@i-j",
                "arn:aws-us-gov:iam::123456789012:role/mvp-cloudformation"):
        assert settings_with(prod=arn).clusters["prod"].cfn_role == arn


# --- the wrapper: RoleARN on the three calls that take it ----------------------------------------


@pytest.fixture
def client(monkeypatch):
    isolate_from_aws(monkeypatch)
    return make_client("cloudformation")


@pytest.fixture
def stub(client):
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def create_params(**extra) -> dict:
    return {"StackName": "stage", "TemplateBody": "{}", "Parameters": [{"ParameterKey": "A", "ParameterValue": "1"}],
            "Tags": [{"Key": "k", "Value": "v"}], "Capabilities": CAPABILITIES,
            "EnableTerminationProtection": False, "OnFailure": "ROLLBACK", **extra}


def change_set_params(**extra) -> dict:
    return {"StackName": "stage", "ChangeSetName": "cs", "ChangeSetType": "UPDATE", "TemplateBody": "{}",
            "Parameters": [{"ParameterKey": "A", "ParameterValue": "1"}], "Tags": [{"Key": "k", "Value": "v"}],
            "Capabilities": CAPABILITIES, "Description": "mvp-tasks preview", **extra}


def call_all_three(stacks: Stacks) -> None:
    stacks.create_stack("stage", "{}", {"A": "1"}, {"k": "v"})
    stacks.create_change_set("stage", "{}", {"A": "1"}, {"k": "v"}, "cs")
    stacks.delete_stack("stage")


def queue_all_three(stub: Stubber, **extra) -> None:
    stub.add_response("create_stack", {"StackId": ts.STACK_ID}, create_params(**extra))
    stub.add_response("create_change_set", {"Id": ts.CHANGE_SET_ID, "StackId": ts.STACK_ID},
                      change_set_params(**extra))
    stub.add_response("delete_stack", {}, {"StackName": "stage", **extra})


def test_a_stacks_with_a_role_sends_it_on_create_stack_change_set_and_delete(client, stub):
    queue_all_three(stub, RoleARN=ROLE)
    call_all_three(Stacks(client).with_role(ROLE))


def test_a_stacks_without_a_role_sends_no_role_arn(client, stub):
    queue_all_three(stub)  # an empty RoleARN would be refused by CloudFormation: none is sent at all
    call_all_three(Stacks(client).with_role(""))


def test_with_role_keeps_the_client_and_the_clock():
    sleep, clock = (lambda s: None), (lambda: 0.0)
    stacks = Stacks("client", sleep=sleep, clock=clock).with_role(ROLE)
    assert (stacks.client, stacks.sleep, stacks.clock, stacks.role_arn) == ("client", sleep, clock, ROLE)


# --- planners: the cluster's role on every stack step, and on the change sets they make ----------


class RoleStacks(tp.FakeStacks):
    """The planner's fake CloudFormation, noting the role each change set was made under."""

    role = ""

    def with_role(self, role_arn: str) -> "RoleStacks":
        bound = RoleStacks.__new__(RoleStacks)
        bound.__dict__ = self.__dict__  # the same data: only the role differs
        bound.role = role_arn
        return bound

    def create_change_set(self, name, body, parameters, tags, change_set):
        super().create_change_set(name, body, parameters, tags, change_set)
        self.created[-1]["role"] = self.role


def role_world(stacks=None, **kw):
    world = tp.make_world(stacks, settings=settings_with(ROLE, PROD_ROLE, state=STORE_ROLE), **kw)
    fake = world.stacks()
    world._stacks = RoleStacks(list(fake.stacks.values()), fake.bodies, fake.changes)
    return world


def test_cluster_up_creates_each_cluster_under_its_role():
    world = role_world([])
    for name, role in (("stage", ROLE), ("prod", PROD_ROLE)):
        plan = planner.plan_cluster(world, world.settings.clusters[name])
        (step,) = [s for s in plan.steps if isinstance(s, EnsureStack)]
        assert (step.action, step.role_arn) == ("create", role)


def test_cluster_up_makes_its_change_set_under_its_role():
    world = role_world([tp.cluster_stack("stage")], changes={"stage": [Change("Modify", "Cluster", "AWS::ECS::Cluster")]})
    settings = load_settings(tp.config(clusters={"stage": {"parameters": {"ContainerInsights": "enabled"},
                                                           "cfn_role": ROLE}}, projects={}), tp.ROOT)
    world.settings = settings
    plan = planner.plan_cluster(world, settings.clusters["stage"])
    (step,) = plan.steps
    assert (step.action, step.role_arn) == ("update", ROLE)
    assert [(c["name"], c["role"]) for c in world.stacks().created] == [("stage", ROLE)]


def test_the_store_is_made_under_the_stores_role():
    world = role_world([], store=False)
    plan = planner.plan_cluster(world, world.settings.clusters["prod"])
    (store,) = [s for s in plan.steps if isinstance(s, EnsureStore)]
    assert (store.stack.stack, store.stack.role_arn) == ("mvp-deploy-state", STORE_ROLE)


def test_an_app_stack_takes_its_clusters_role():
    world = role_world()
    step, _ = planner.app_stack_step(world, world.settings.projects[tp.PROJECT], world.settings.clusters["prod"],
                                     tp.C1)
    assert (step.stack, step.action, step.role_arn) == (f"{tp.PROJECT}-prod", "create", PROD_ROLE)


def test_app_destroy_and_cluster_down_delete_under_the_clusters_role():
    world = role_world([tp.cluster_stack("stage"), tp.cluster_stack("prod"), tp.app_stack("prod")])
    plan = planner.plan_destroy(world, world.settings.projects[tp.PROJECT], world.settings.clusters["prod"])
    assert [(type(s), s.role_arn) for s in plan.steps] == [(DeleteStack, PROD_ROLE)]
    plan = planner.plan_cluster_down(world, world.settings.clusters["stage"])
    assert [(type(s), s.role_arn) for s in plan.steps] == [(DeleteStack, ROLE)]


# --- applying: the step's role reaches CreateStack and DeleteStack --------------------------------


CLUSTER = ClusterSettings(name=ts.NAME, template="cluster.yml", protected=False, promote_from="", tag="stage",
                          cfn_role=ROLE)


def apply(client, step) -> None:
    world = make_clocked_world(ts.SETTINGS, ts.reporter(yes=True), SimpleNamespace(cloudformation=client),
                               clock=FakeClock())
    target = TargetPlan(ts.NAME, kind="cluster", cluster=ts.NAME, action="cluster.up", steps=[step])
    apply_step(TargetRun(world, target, Guard(world, target, CLUSTER), CLUSTER), step)


def test_applying_a_create_sends_the_steps_role(client, stub):
    stub.add_response("create_stack", {"StackId": ts.STACK_ID}, {**ts.create_stack_params(), "RoleARN": ROLE})
    stub.add_response("describe_stacks", ts.describe_stacks("CREATE_COMPLETE"), ts.by(ts.STACK_ID))
    stub.add_response("describe_stack_events", ts.stack_events(ts.stack_event("CREATE_COMPLETE", seconds=9)),
                      ts.by(ts.STACK_ID))
    apply(client, EnsureStack(stack=ts.NAME, template=ts.TEMPLATE, parameters=ts.PARAMETERS,
                              tags={"mvp:managed-by": "mvp-tasks", **ts.TAGS}, action="create", role_arn=ROLE))


def test_applying_a_delete_sends_the_steps_role(client, stub):
    stub.add_response("describe_stack_events", ts.stack_events(ts.stack_event("CREATE_COMPLETE", seconds=-60)),
                      ts.by(ts.STACK_ID))
    stub.add_response("delete_stack", {}, {"StackName": ts.NAME, "RoleARN": ROLE})
    stub.add_response("describe_stacks", ts.describe_stacks("DELETE_COMPLETE"), ts.by(ts.STACK_ID))
    stub.add_response("describe_stack_events", ts.stack_events(ts.stack_event("DELETE_COMPLETE", seconds=9)),
                      ts.by(ts.STACK_ID))
    apply(client, DeleteStack(ts.NAME, "CREATE_COMPLETE", ts.STACK_ID, role_arn=ROLE))
