"""The planners on plain data: given the world's state, these are the steps.

A fake world over plain data: a registry (repository -> tag -> digest), CloudFormation stacks
(`StackInfo`s, template bodies, the changes a change set would list), ECS services and each
cluster's deploy history (`Record`s, newest first). The settings are real (`load_settings` on a
config with stage and a protected prod that promotes from stage), and so are the templates: the
root is this repository. The fake world inherits the real `World`'s cluster-stack and history
checks (a missing or unready cluster stack, no deploy store yet) and uses the real `ChangeSets`. No AWS, no network, no docker.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mvp_tasks.state.store import ClusterStore as History, Holder, Record
from mvp_tasks.aws.stacks import Change, StackInfo
from mvp_tasks.errors import BuildError, ConfigError, MvpError, StackBusy, StackFailed, UsageError
from mvp_tasks.image.git import Revision
from mvp_tasks.image.registry import RepositoryChanges
from mvp_tasks.plan import planner
from mvp_tasks.plan.steps import (BuildImage, DeleteStack, EnsureStack, MoveTag, Plan, PushImage, RollService,
                                  TargetPlan)
from mvp_tasks.settings import load_settings
from mvp_tasks.templates import load_template
from mvp_tasks.world import ChangeSets, World

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "museum-adventure"
REPO = PROJECT
HOST = "registry.test"
APP_TEMPLATE = "projects/museum-adventure/deploy.yml"
CLUSTER_TEMPLATE = "infrastructure/fargate_cluster.yml"

C1 = "1a2b3c4d5e6f" + "0" * 28
C2 = "2b3c4d5e6f70" + "1" * 28
C2_TWIN = "2b3c4d5" + "f" * 33  # shares C2's first 7 digits
C3 = "3c4d5e6f7081" + "2" * 28
HEAD = "4d5e6f708192" + "3" * 28
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
D4 = "sha256:" + "4" * 64
COMMITS = {D1: C1, D2: C2, D3: C3, D4: HEAD}

OUTPUTS = {"VpcId": "vpc-1", "PublicSubnets": "subnet-1,subnet-2", "LoadBalancerSecurityGroup": "sg-lb",
           "TaskSecurityGroup": "sg-task"}


def config(**over: Any) -> dict:
    mvp = {
        "region": "us-east-1",
        "registry": HOST,
        "default_cluster": "stage",
        "clusters": {
            "stage": {"template": CLUSTER_TEMPLATE},
            "prod": {"template": CLUSTER_TEMPLATE, "protected": True, "promote_from": "stage"},
        },
        "projects": {PROJECT: {"clusters": ["stage", "prod"]}},
    }
    mvp.update(over)
    return {"mvp": mvp}


SETTINGS = load_settings(config(), ROOT)


# --- the fakes -----------------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self, tags: dict[str, str], commits: dict[str, str] | None = None,
                 repository_changes: RepositoryChanges | None = None):
        self.images = {REPO: dict(tags)}
        self.commits = COMMITS if commits is None else commits
        self.repository_changes = repository_changes
        self.ensured: list[tuple[str, bool]] = []

    def describe(self) -> str:
        return f"registry {HOST}"

    def ref(self, repository: str, tag: str) -> str:
        return f"{HOST}/{repository}:{tag}"

    def get_digest(self, repository: str, tag: str) -> str | None:
        return self.images.get(repository, {}).get(tag)

    def get_commit(self, repository: str, tag: str) -> str:
        digest = self.get_digest(repository, tag)
        return self.commits.get(digest, "") if digest else ""

    def list_tags(self, repository: str) -> list[str]:
        return list(self.images.get(repository, {}))

    def get_repository_changes(self, repository: str) -> RepositoryChanges:
        self.ensured.append((repository, True))  # True: read only, as planning does
        return self.repository_changes or RepositoryChanges(repository)


class FakeStacks:
    """CloudFormation as plain data; planning may only read and make change sets."""

    def __init__(self, stacks: list[StackInfo], bodies: dict[str, str], changes: dict[str, list | None]):
        self.stacks = {s.name: s for s in stacks}
        self.bodies = bodies
        self.changes = changes
        self.created: list[dict] = []
        self.waited: list[tuple[str, str]] = []
        self.resources: dict[str, list] = {}  # stack name -> its resources (`StackResource`s)
        self.listed: list[str] = []

    def list_stack_resources(self, ref: str) -> list:
        name = next((s.name for s in self.stacks.values() if ref in (s.name, s.stack_id)), ref)
        self.listed.append(name)
        return list(self.resources.get(name, []))

    def get_stack(self, name: str) -> StackInfo | None:
        return self.stacks.get(name)

    def get_template_body(self, name: str) -> str:
        return self.bodies[name]

    def list_live_stack_names(self) -> list[str]:
        return list(self.stacks)

    def list_stacks_tagged(self, key: str, value: str) -> list[str]:
        return [name for name, s in self.stacks.items() if s.tags.get(key) == value]

    def list_stacks_with_tag(self, key: str) -> list[StackInfo]:
        return [s for name, s in sorted(self.stacks.items()) if key in s.tags]

    def create_change_set(self, name: str, body: str, parameters, tags, change_set: str) -> None:
        self.created.append({"name": name, "body": body, "parameters": dict(parameters), "tags": dict(tags),
                             "change_set": change_set})

    def wait_for_change_set(self, name: str, change_set: str, timeout: float, poll: float):
        self.waited.append((name, change_set))
        return self.changes.get(name)


class FakeHistory:
    def __init__(self, records: list[Record], lock: Holder | None = None):
        self.records = list(records)  # newest first
        self.lock = lock
        self.reads: list[tuple[str, int]] = []  # (project, limit) of every read: a Query each in the store

    def get_lock(self, project: str) -> Holder | None:
        return self.lock

    def get_records(self, project: str, limit: int = 50) -> list[Record]:
        self.reads.append((project, limit))
        return [r for r in self.records if r.project == project][:limit]

    get_current = History.get_current  # the real rule, over these records


class FakeServices:
    """Services by (ECS cluster, name): (running, desired), or (running, desired, the task definition
    its primary deployment runs). Counts the reads."""

    def __init__(self, states: dict[tuple[str, str], tuple]):
        self.states = states
        self.reads: list[tuple[str, str]] = []

    def get_service(self, cluster: str, service: str, max_age: float = 0.0):
        self.reads.append((cluster, service))
        if (cluster, service) not in self.states:
            return None
        running, desired, *task_definition = self.states[(cluster, service)]
        arn = task_definition[0] if task_definition else ""
        primary = SimpleNamespace(task_definition=arn) if arn else None
        return SimpleNamespace(name=service, cluster=cluster, running=running, desired=desired, primary=primary,
                               task_definition=arn)


class FakeWorld(World):
    """The real World's cluster_stack() and history() checks, over the fakes above."""

    registry = None  # shadows World.registry (a property): a plain attribute here

    def __init__(self, settings, stacks: FakeStacks, registry: FakeRegistry, histories: dict[str, FakeHistory],
                 services: FakeServices):
        super().__init__(settings, reporter=None, aws=SimpleNamespace(dynamodb=None, cloudformation=None, ecs=None))
        self._stacks = stacks
        self.registry = registry
        self._histories = histories
        self._services = services

    def stacks(self):
        return self._stacks

    def services(self):
        return self._services

    def history(self, cluster):
        super().history(cluster)  # the cluster stack exists and is ready, and there is a deploy store
        return self._histories.setdefault(cluster.name, FakeHistory([]))

    # The repository's own git is not the planner's business in unit tests: a clean tree, no HEAD.
    dirty: set = set()

    def head_commit(self) -> str:
        return ""

    def template_dirty(self, path: str) -> bool:
        return path in self.dirty

    def config_dirty(self, keys) -> bool:
        return any(tuple(k) in self.dirty for k in keys)

    def builder(self, host=None):  # pragma: no cover - planners get their builder from the caller
        raise AssertionError("planning must not make a builder itself")


class FakeDocker:
    engine = ("local", "docker", "")

    def __init__(self, images: set[str]):
        self.images = images
        self.engine_checks = 0

    def check_engine(self) -> None:
        self.engine_checks += 1

    def has_image(self, ref: str) -> bool:
        return ref in self.images


class FakeBuilder:
    def __init__(self, images: set[str] = frozenset()):
        self.docker = FakeDocker(set(images))
        self.platform = "linux/amd64"
        self.where = ""
        self.closed = False

    def close(self) -> None:
        self.closed = True


# --- plain data ----------------------------------------------------------------------------------


def template_defaults(path: str) -> dict[str, str]:
    template = load_template(ROOT / path, ROOT)
    return {k: str(v["Default"]) for k, v in template.parameters.items() if "Default" in v}


def body(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def app_given(cluster: str) -> dict[str, str]:
    """The parameters the planner passes to the app's stack (declared, not defaulted)."""
    return {"ClusterName": cluster, **OUTPUTS, "EnvironmentName": cluster, "ProjectName": PROJECT,
            "Image": f"{HOST}/{REPO}:{cluster}"}


def cluster_stack(name: str, *, status: str = "CREATE_COMPLETE", protection: bool | None = None,
                  outputs: dict | None = None, **parameters: str) -> StackInfo:
    return StackInfo(
        name=name, stack_id=f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1", status=status,
        outputs={"ClusterName": name, **OUTPUTS} if outputs is None
        else outputs,
        parameters={**template_defaults(CLUSTER_TEMPLATE), **parameters},
        tags={"mvp:managed-by": "mvp-tasks", "mvp:cluster": name},
        termination_protection=(name == "prod") if protection is None else protection,
    )


def store_stack() -> StackInfo:
    """The deploy store's stack, as `cluster.up` made it (so cluster plans have nothing to do there)."""
    return StackInfo(
        name="mvp-deploy-state", stack_id="arn:aws:cloudformation:us-east-1:123456789012:stack/mvp-deploy-state/1",
        status="CREATE_COMPLETE", outputs={"Table": "mvp-deploy-state-Table-1", "Schema": "1"},
        parameters={"TableName": ""}, tags={"mvp:managed-by": "mvp-tasks", "mvp:role": "deploy-store"},
        termination_protection=False,
    )


def app_stack(cluster: str, *, status: str = "CREATE_COMPLETE", service: str = "", protection: bool = False,
              **parameters: str) -> StackInfo:
    name = f"{PROJECT}-{cluster}"
    return StackInfo(
        name=name, stack_id=f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1", status=status,
        outputs={"ClusterName": cluster, "ServiceName": service or name},
        parameters={**template_defaults(APP_TEMPLATE), **app_given(cluster), **parameters},
        tags={"mvp:managed-by": "mvp-tasks", "mvp:cluster": cluster, "mvp:project": PROJECT},
        termination_protection=protection,
    )


def rec(action: str, commit: str, digest: str, outcome: str = "succeeded", cluster: str = "stage",
        project: str = PROJECT) -> Record:
    return Record(project, cluster, action, commit, digest, outcome, "ci", "2024-05-01T12:00:00+00:00")


def make_world(stacks: list[StackInfo] | None = None, *, tags: dict[str, str] | None = None,
               commits: dict[str, str] | None = None, records: dict[str, list[Record]] | None = None,
               changes: dict[str, list | None] | None = None, services: dict | None = None,
               bodies: dict[str, str] | None = None, settings=None, repository_changes=None,
               store: bool = True) -> FakeWorld:
    stacks = [cluster_stack("stage"), cluster_stack("prod")] if stacks is None else stacks
    stacks = [store_stack(), *stacks] if store else stacks
    all_bodies = {s.name: body(APP_TEMPLATE if "mvp:project" in s.tags else CLUSTER_TEMPLATE) for s in stacks}
    all_bodies["mvp-deploy-state"] = body("mvp_tasks/state/store.yml")
    all_bodies.update(bodies or {})
    return FakeWorld(
        settings or SETTINGS,
        FakeStacks(stacks, all_bodies, changes or {}),
        FakeRegistry(tags or {}, commits, repository_changes),
        {name: FakeHistory(r) for name, r in (records or {}).items()},
        FakeServices(services or {}),
    )


def clusters_and(*apps: StackInfo, **kw: Any) -> FakeWorld:
    return make_world([cluster_stack("stage"), cluster_stack("prod"), *apps], **kw)


def types(plan: TargetPlan) -> list[type]:
    return [type(s) for s in plan.steps]


PROJ = SETTINGS.projects[PROJECT]
STAGE = SETTINGS.clusters["stage"]
PROD = SETTINGS.clusters["prod"]


# --- plan_deploy ---------------------------------------------------------------------------------


def test_deploy_without_a_stack_creates_it_with_its_service():
    world = make_world(tags={"stage": D1, C1: D1})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert types(plan) == [EnsureStack]
    step = plan.steps[0]
    assert (step.action, step.service, step.stack, step.protect, step.protected) == \
        ("create", True, "museum-adventure-stage", False, False)
    assert dict(step.parameters) == app_given("stage")
    assert dict(step.tags) == {"mvp:managed-by": "mvp-tasks", "mvp:cluster": "stage", "mvp:project": PROJECT}
    assert step.template.label == APP_TEMPLATE
    assert (plan.key, plan.kind, plan.action, plan.commit, plan.digest) == \
        ("museum-adventure@stage", "app", "deploy", C1, D1)
    assert plan.note == ""
    assert plan.done == f"{C1[:12]} deployed"
    assert not plan.needs_confirmation
    lines = plan.lines()
    assert lines[0] == f"+ stack museum-adventure-stage from {APP_TEMPLATE}"
    assert "+ AWS::ECS::Service Service" in lines
    assert "+ AWS::ElasticLoadBalancingV2::Listener HttpsListener (if HasCertificate)" in lines
    assert world.stacks().created == [] and world.change_sets.pending() == []


def test_deploy_unchanged_and_rolled_out_says_what_runs():
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1},
                         records={"stage": [rec("deploy", C1, D1)]},
                         services={("stage", "museum-adventure-stage"): (1, 2)})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == []
    assert plan.note == f"running {C1[:12]}, 1/2 tasks"
    assert not plan.changes and not plan.needs_confirmation and plan.lines() == []
    assert world.stacks().created == []  # an unchanged stack is found without a change set


def test_deploy_unchanged_note_without_a_service_or_commit():
    world = clusters_and(app_stack("stage"), tags={"stage": D1}, commits={},
                         records={"stage": [rec("deploy", "", D1)]})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == []
    assert plan.note == f"running {D1[:19]}"


def test_deploy_rolls_the_service_when_its_tag_names_another_image():
    world = clusters_and(app_stack("stage"), tags={"stage": D2, C1: D1, C2: D2},
                         records={"stage": [rec("deploy", C1, D1)]})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    reason = f"{C2[:12]}: its tag stage names another image than it last rolled out"
    assert plan.steps == [RollService("museum-adventure-stage", reason, protected=False)]
    assert plan.note == ""
    assert plan.done == f"{C2[:12]} deployed"
    assert plan.lines() == [f"~ new deployment of the service ({reason})"]
    assert not plan.needs_confirmation


@pytest.mark.parametrize("records, rolls", [
    ([], True),  # no history: roll to be sure
    ([rec("deploy", C2, D2, outcome="failed"), rec("deploy", C1, D1)], True),  # a failed rollout does not count
    ([rec("destroy", C2, D2), rec("deploy", C1, D1)], True),  # nor does a destroy
    ([rec("deploy", C2, D2, outcome="failed"), rec("promote", C2, D2)], False),
    ([rec("deploy", C2, D2, cluster="stage", project="other-app"), rec("deploy", C1, D1)], True),
])
def test_deploy_rolls_unless_the_last_successful_rollout_was_this_digest(records, rolls):
    world = clusters_and(app_stack("stage"), tags={"stage": D2, C1: D1, C2: D2}, records={"stage": records})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert types(plan) == ([RollService] if rolls else [])


def test_deploy_changed_parameters_update_through_a_change_set_then_roll():
    changes = [Change("Modify", "Service", "AWS::ECS::Service", "False"),
               Change("Modify", "TaskDefinition", "AWS::ECS::TaskDefinition", "True")]
    world = clusters_and(app_stack("stage", DesiredCount="2"), tags={"stage": D2, C1: D1, C2: D2},
                         records={"stage": [rec("deploy", C1, D1)]},
                         changes={"museum-adventure-stage": changes})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert types(plan) == [EnsureStack, RollService]
    step, roll = plan.steps
    assert step.action == "update" and step.service and not step.protect
    assert step.parameter_changes == (("DesiredCount", "2", "1"),)
    assert step.changes == ("~ AWS::ECS::Service Service",
                            "~ AWS::ECS::TaskDefinition TaskDefinition (replacement: True)")
    assert step.change_set.startswith("mvp-")
    assert world.change_sets.pending() == [("museum-adventure-stage", step.change_set)]
    assert plan.change_sets() == [("museum-adventure-stage", step.change_set)]
    [created] = world.stacks().created
    assert created["name"] == "museum-adventure-stage" and created["change_set"] == step.change_set
    assert created["body"] == body(APP_TEMPLATE)
    # A value no longer given goes back to the template's default, said explicitly (an update that
    # leaves it out may keep the stack's previous value: moto does).
    assert created["parameters"] == {**app_given("stage"), "DesiredCount": "1"}
    assert world.stacks().waited == [("museum-adventure-stage", step.change_set)]
    assert roll.stack == "museum-adventure-stage"
    assert plan.lines() == [
        "~ stack museum-adventure-stage",
        "  ~ AWS::ECS::Service Service",
        "  ~ AWS::ECS::TaskDefinition TaskDefinition (replacement: True)",
        "  ~ parameter DesiredCount: 2 -> 1",
        f"~ new deployment of the service ({C2[:12]}: its tag stage names another image than it last rolled out)",
    ]


def test_deploy_configured_parameter_change_without_a_new_image_does_not_roll():
    settings = load_settings(config(projects={PROJECT: {"clusters": ["stage", "prod"],
                                                        "parameters": {"DesiredCount": 3}}}), ROOT)
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1}, settings=settings,
                         records={"stage": [rec("deploy", C1, D1)]},
                         changes={"museum-adventure-stage": [Change("Modify", "Service", "AWS::ECS::Service")]})
    plan = planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    assert types(plan) == [EnsureStack]
    assert plan.steps[0].action == "update"
    assert plan.steps[0].parameter_changes == (("DesiredCount", "1", "3"),)
    assert plan.steps[0].parameters["DesiredCount"] == "3"


def test_deploy_change_set_with_nothing_to_do_is_no_step_and_is_forgotten():
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1},
                         records={"stage": [rec("deploy", C1, D1)]},
                         bodies={"museum-adventure-stage": "# reformatted\n" + body(APP_TEMPLATE)},
                         changes={"museum-adventure-stage": None})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == []
    assert plan.note.startswith(f"running {C1[:12]}")
    assert len(world.stacks().created) == 1
    assert world.change_sets.pending() == []


def test_deploy_to_a_protected_cluster_needs_confirmation():
    world = make_world(tags={"prod": D1, C1: D1})
    plan = planner.plan_deploy(world, PROJ, PROD)
    assert types(plan) == [EnsureStack]
    assert plan.steps[0].protected and plan.steps[0].action == "create"
    assert not plan.steps[0].protect  # app stacks get no termination protection
    assert plan.needs_confirmation
    assert dict(plan.steps[0].parameters)["Image"] == f"{HOST}/{REPO}:prod"

    world = clusters_and(app_stack("prod"), tags={"prod": D2, C2: D2}, records={"prod": [rec("deploy", C1, D1,
                                                                                              cluster="prod")]})
    plan = planner.plan_deploy(world, PROJ, PROD)
    assert types(plan) == [RollService]
    assert plan.steps[0].protected and plan.needs_confirmation


def test_deploy_of_a_missing_image_says_to_push_it():
    world = make_world(tags={C1: D1})
    with pytest.raises(BuildError) as exc:
        planner.plan_deploy(world, PROJ, STAGE)
    assert exc.value.message == f"image {HOST}/{REPO}:stage does not exist"
    assert exc.value.hint == "push it first: inv app.push museum-adventure --cluster stage"


def test_deploy_without_the_cluster_stack_says_to_bring_it_up():
    world = make_world([cluster_stack("prod")], tags={"stage": D1})
    with pytest.raises(UsageError) as exc:
        planner.plan_deploy(world, PROJ, STAGE)
    assert exc.value.message == "cluster stage does not exist (no stack stage)"
    assert "inv cluster.up stage" in exc.value.hint


def test_deploy_needs_a_ready_cluster_stack_and_the_deploy_store():
    world = make_world([cluster_stack("stage")], tags={"stage": D1}, store=False)
    with pytest.raises(UsageError) as exc:
        planner.plan_deploy(world, PROJ, STAGE)
    assert exc.value.message == "there is no deploy store in this account and region yet (stack mvp-deploy-state)"
    assert exc.value.hint == "create it: inv cluster.up stage"
    world = make_world([cluster_stack("stage", status="UPDATE_IN_PROGRESS")], tags={"stage": D1})
    with pytest.raises(StackFailed, match="not ready for apps"):
        planner.plan_deploy(world, PROJ, STAGE)


def test_deploy_refuses_a_busy_stack_and_recreates_a_failed_create():
    world = clusters_and(app_stack("stage", status="UPDATE_IN_PROGRESS"), tags={"stage": D1, C1: D1})
    with pytest.raises(StackBusy, match="another operation is running"):
        planner.plan_deploy(world, PROJ, STAGE)

    failed = app_stack("stage", status="ROLLBACK_COMPLETE")
    world = clusters_and(failed, tags={"stage": D2, C2: D2}, records={"stage": [rec("deploy", C1, D1)]})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert types(plan) == [EnsureStack]  # a new stack starts a new service: nothing to roll
    assert plan.steps[0].action == "recreate" and plan.steps[0].old_stack_id == failed.stack_id
    assert plan.steps[0].destructive and plan.needs_confirmation
    assert plan.lines()[0] == "- delete stack museum-adventure-stage (ROLLBACK_COMPLETE: its first create failed)"


def test_deploy_reads_list_parameters_as_the_emulator_lists_them():
    # The emulator reads List<...> parameters back as "['a', 'b']": the same value as "a,b".
    stack = app_stack("stage", PublicSubnets="['subnet-1', 'subnet-2']")
    world = clusters_and(stack, tags={"stage": D1, C1: D1}, records={"stage": [rec("deploy", C1, D1)]})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == [] and world.stacks().created == []


def test_deploy_expands_placeholders_and_uses_the_clusters_own_tag():
    settings = load_settings(config(
        clusters={"stage": {}, "prod": {"protected": True, "promote_from": "stage", "tag": "live"}},
        projects={PROJECT: {"clusters": ["stage", "prod"],
                            "parameters": {"HealthCheckPath": "/{project}/{cluster}/{tag}/{commit}"}}}), ROOT)
    prod = settings.clusters["prod"]
    world = make_world(tags={"live": D1, C1: D1}, settings=settings)
    plan = planner.plan_deploy(world, settings.projects[PROJECT], prod)
    step = plan.steps[0]
    assert step.parameters["Image"] == f"{HOST}/{REPO}:live"
    assert step.parameters["HealthCheckPath"] == f"/{PROJECT}/prod/live/{C1}"

    world = clusters_and(app_stack("prod"), tags={"stage": D2, "live": D1, C2: D2}, settings=settings)
    plan = planner.plan_promote(world, settings.projects[PROJECT], prod, source_tag="stage")
    assert plan.steps[0] == MoveTag(REPO, "live", "stage", D1, D2, label="stage", protected=True)

    world = make_world(tags={"prod": D1}, settings=settings)  # a tag named after the cluster is not its tag
    with pytest.raises(BuildError, match=f"image {HOST}/{REPO}:live does not exist"):
        planner.plan_deploy(world, settings.projects[PROJECT], prod)


def test_deploy_refuses_a_project_not_mapped_to_the_cluster():
    settings = load_settings(config(projects={PROJECT: {"clusters": ["stage"]}}), ROOT)
    world = make_world(tags={"prod": D1}, settings=settings)
    with pytest.raises(ConfigError, match="not mapped to cluster prod"):
        planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["prod"])


# --- plan_promote --------------------------------------------------------------------------------


def test_promote_moves_the_tag_then_rolls():
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D1, C1: D1, C2: D2})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert plan.steps == [
        MoveTag(REPO, "prod", "stage", D1, D2, label="stage", protected=True),
        RollService("museum-adventure-prod", protected=True),
    ]
    assert (plan.key, plan.action, plan.commit, plan.digest) == ("museum-adventure@prod", "promote", C2, D2)
    assert plan.done == f"{C2[:12]} promoted"
    assert plan.needs_confirmation
    assert plan.lines() == [f"~ tag prod: {D1[:19]} -> {D2[:19]} (stage)", "~ new deployment of the service"]
    assert world.stacks().created == []  # an existing stack is not re-planned


def test_promote_into_a_cluster_without_the_stack_deploys_it():
    world = make_world(tags={"stage": D2, C2: D2})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert types(plan) == [MoveTag, EnsureStack]
    move, ensure = plan.steps
    assert (move.tag, move.source, move.from_digest, move.to_digest) == ("prod", "stage", "", D2)
    assert move.lines() == [f"~ tag prod: none -> {D2[:19]} (stage)"]
    assert (ensure.action, ensure.service, ensure.protected) == ("create", True, True)
    assert dict(ensure.parameters) == app_given("prod")


def test_promote_of_the_digest_already_there_is_a_note():
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D2, C2: D2},
                         records={"prod": [rec("promote", C2, D2, cluster="prod")]})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert plan.steps == []
    assert plan.note == f"already runs stage ({D2[:19]})"
    assert not plan.changes


def test_promote_rolls_when_the_tag_matches_but_the_service_never_rolled_to_it():
    """`app.push --cluster prod` moves prod's tag without a rollout (plan_deploy rolls for exactly this:
    "after `app.push` moved the tag, the service must roll"). A promote then finds the tag already at
    stage's digest, but the history says prod's service last rolled out D1: "already runs" is untrue,
    and nothing makes the service pull the image its tag names."""
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D2, C1: D1, C2: D2},
                         records={"prod": [rec("deploy", C1, D1, cluster="prod")]})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert types(plan) == [RollService]
    assert plan.note == ""


def test_promote_same_digest_without_a_stack_only_creates_it():
    world = make_world(tags={"stage": D2, "prod": D2, C2: D2})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert types(plan) == [EnsureStack]


def test_promote_of_a_missing_source_retags_nothing():
    world = clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1})
    with pytest.raises(UsageError) as exc:
        planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert exc.value.message == f"no image {HOST}/{REPO}:stage to promote; nothing was retagged"
    assert exc.value.hint == "push it first: inv app.push museum-adventure --cluster stage"


@pytest.mark.parametrize("given", [C1[:7], C1[:12], C1, f"  {C1[:9].upper()} "])
def test_promote_a_commit_by_a_unique_prefix(given):
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D2, C1: D1, C2: D2})
    plan = planner.plan_promote(world, PROJ, PROD, commit=given)
    assert plan.steps == [MoveTag(REPO, "prod", C1, D2, D1, label=C1[:12], protected=True),
                          RollService("museum-adventure-prod", protected=True)]
    assert plan.commit == C1 and plan.digest == D1


def test_promote_a_commit_whose_image_has_no_revision_label_still_names_it():
    world = clusters_and(app_stack("prod"), tags={"prod": D2, C1: D1}, commits={})
    plan = planner.plan_promote(world, PROJ, PROD, commit=C1[:8])
    assert plan.commit == C1


def test_promote_an_ambiguous_or_unknown_commit_is_refused():
    world = clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1, C2: D2, C2_TWIN: D3})
    with pytest.raises(UsageError, match="ambiguous") as exc:
        planner.plan_promote(world, PROJ, PROD, commit=C2[:7])
    assert C2[:12] in exc.value.message and C2_TWIN[:12] in exc.value.message
    with pytest.raises(BuildError, match="no image of museum-adventure was built from commit deadbeef"):
        planner.plan_promote(world, PROJ, PROD, commit="deadbeef")
    with pytest.raises(UsageError, match="not a commit hash"):
        planner.plan_promote(world, PROJ, PROD, commit="stage")
    with pytest.raises(UsageError, match="not a commit hash"):
        planner.plan_promote(world, PROJ, PROD, commit="1a2b3c")  # 6 digits: too short


# --- plan_rollback -------------------------------------------------------------------------------


ROLLBACK_TAGS = {"stage": D3, C1: D1, C2: D2, C3: D3}


def test_rollback_picks_the_newest_successful_deploy_of_another_digest():
    records = [rec("update", C3, D3), rec("deploy", C3, D3), rec("deploy", C2, D2, outcome="failed"),
               rec("deploy", C1, D1), rec("deploy", C2, D2)]
    world = clusters_and(app_stack("stage"), tags=ROLLBACK_TAGS, records={"stage": records})
    plan = planner.plan_rollback(world, PROJ, STAGE)
    assert plan.steps == [MoveTag(REPO, "stage", C1, D3, D1, label=C1[:12], protected=False),
                          RollService("museum-adventure-stage", protected=False)]
    assert (plan.action, plan.commit, plan.digest) == ("rollback", C1, D1)
    # The release it leaves is marked bad (issue 17).
    assert plan.done == f"rolled back to {C1[:12]}; {C3[:12]} marked bad for museum-adventure in stage"
    assert plan.lines() == [f"~ tag stage: {D3[:19]} -> {D1[:19]} ({C1[:12]})", "~ new deployment of the service"]
    assert not plan.needs_confirmation


def test_rollback_to_a_prefix():
    world = clusters_and(app_stack("stage"), tags=ROLLBACK_TAGS, records={"stage": [rec("deploy", C3, D3)]})
    plan = planner.plan_rollback(world, PROJ, STAGE, to=C2[:8])
    assert plan.steps == [MoveTag(REPO, "stage", C2, D3, D2, label=C2[:12]), RollService("museum-adventure-stage")]


def test_rollback_to_what_runs_is_a_note():
    world = clusters_and(app_stack("stage"), tags=ROLLBACK_TAGS)
    plan = planner.plan_rollback(world, PROJ, STAGE, to=C3[:10])
    assert plan.steps == []
    assert plan.note == f"already runs {C3[:12]}"


def test_rollback_without_an_earlier_deploy_is_refused():
    world = clusters_and(app_stack("stage"), tags=ROLLBACK_TAGS,
                         records={"stage": [rec("deploy", C3, D3), rec("deploy", C2, D2, outcome="failed")]})
    with pytest.raises(UsageError) as exc:
        planner.plan_rollback(world, PROJ, STAGE)
    assert exc.value.message == "no earlier deploy of museum-adventure in stage to roll back to"
    assert "--to SHA" in exc.value.hint


def test_rollback_to_an_image_gone_from_the_registry_is_refused():
    world = clusters_and(app_stack("stage"), tags={"stage": D3, C3: D3},
                         records={"stage": [rec("deploy", C3, D3), rec("deploy", C1, D1)]})
    with pytest.raises(UsageError, match=f"no image {HOST}/{REPO}:{C1} to roll back to"):
        planner.plan_rollback(world, PROJ, STAGE)


def test_rollback_needs_the_app_stack_and_marks_a_protected_cluster():
    with pytest.raises(UsageError, match="is not deployed to stage"):
        planner.plan_rollback(make_world(tags=ROLLBACK_TAGS), PROJ, STAGE)
    world = clusters_and(app_stack("prod"), tags={"prod": D3, C1: D1, C3: D3},
                         records={"prod": [rec("deploy", C3, D3, cluster="prod"),
                                           rec("deploy", C1, D1, cluster="prod")]})
    plan = planner.plan_rollback(world, PROJ, PROD)
    assert types(plan) == [MoveTag, RollService]
    assert all(s.protected for s in plan.steps) and plan.needs_confirmation


# --- plan_update ---------------------------------------------------------------------------------


def test_update_always_rolls_the_service():
    world = clusters_and(app_stack("stage", service="museum-adventure-stage-Service-abc"), tags={"stage": D1, C1: D1},
                         records={"stage": [rec("deploy", C1, D1)]})
    plan = planner.plan_update(world, PROJ, STAGE)
    assert plan.steps == [RollService("museum-adventure-stage",
                                      f"service museum-adventure-stage-Service-abc, {C1[:12]}", protected=False)]
    assert (plan.action, plan.commit, plan.digest) == ("update", C1, D1)
    assert plan.done == f"{C1[:12]} rolled out"
    assert world.stacks().created == []


def test_update_without_a_stack_is_refused():
    with pytest.raises(UsageError) as exc:
        planner.plan_update(make_world(tags={"stage": D1}), PROJ, STAGE)
    assert exc.value.message == "museum-adventure is not deployed to stage (no stack museum-adventure-stage)"
    assert exc.value.hint == "deploy it first: inv app.deploy museum-adventure --cluster stage"


def test_update_on_prod_is_protected():
    world = clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1})
    plan = planner.plan_update(world, PROJ, PROD)
    assert plan.steps[0].protected and plan.needs_confirmation


def test_update_refuses_a_stack_cloudformation_works_on_or_left_stuck_naming_its_repair():
    # A new deployment beside an update in progress, or on a rollback left half done, would roll
    # what the stack does not say.
    repair = "inv app.repair museum-adventure --cluster stage"
    world = clusters_and(app_stack("stage", status="UPDATE_IN_PROGRESS"), tags={"stage": D1, C1: D1})
    with pytest.raises(StackBusy) as busy:
        planner.plan_update(world, PROJ, STAGE)
    assert busy.value.message == "stack museum-adventure-stage is UPDATE_IN_PROGRESS: another operation is running"
    assert f"an update that hangs is cancelled with `{repair}`" in busy.value.hint
    world = clusters_and(app_stack("stage", status="UPDATE_ROLLBACK_FAILED"), tags={"stage": D1, C1: D1})
    with pytest.raises(StackFailed) as stuck:
        planner.plan_update(world, PROJ, STAGE)
    assert stuck.value.message == "stack museum-adventure-stage is UPDATE_ROLLBACK_FAILED and cannot be updated"
    assert stuck.value.hint == f"continue its rollback with `{repair}`, then re-run"
    world = clusters_and(app_stack("stage", status="ROLLBACK_COMPLETE"), tags={"stage": D1, C1: D1})
    with pytest.raises(StackFailed, match="ROLLBACK_COMPLETE") as failed_create:
        planner.plan_update(world, PROJ, STAGE)
    assert "deploy it again" in failed_create.value.hint
    assert world.stacks().created == []
    world = clusters_and(app_stack("stage", status="UPDATE_ROLLBACK_COMPLETE"), tags={"stage": D1, C1: D1})
    assert types(planner.plan_update(world, PROJ, STAGE)) == [RollService]


def test_app_repair_cancels_a_hung_update_without_the_deploy_lock_and_names_the_run_waiting_on_it():
    from mvp_tasks.plan.steps import CancelUpdate

    world = clusters_and(app_stack("stage", status="UPDATE_IN_PROGRESS"))
    plan = planner.plan_repair_app(world, PROJ, STAGE)
    stack = app_stack("stage", status="UPDATE_IN_PROGRESS")
    assert plan.steps == [CancelUpdate("museum-adventure-stage", stack_id=stack.stack_id)] and plan.warnings == ()
    # The run that started the update holds the lock while it waits: the cancel must not need it.
    assert plan.steps[0].locks is False
    holder = Holder("ci", "runner-1", 4242, "", "t0k3n", "2026-11-01T12:00:00+00:00", 0)
    world = clusters_and(app_stack("stage", status="UPDATE_IN_PROGRESS"))
    world._histories["stage"] = FakeHistory([], lock=holder)
    plan = planner.plan_repair_app(world, PROJ, STAGE)
    assert plan.warnings == ("the deploy of ci on runner-1 (pid 4242) since 2026-11-01 12:00:00 waits on this "
                             "update: it fails once the update is rolled back",)


# --- plan_cluster --------------------------------------------------------------------------------


def test_cluster_new_is_created_with_protection_when_protected():
    world = make_world([])
    plan = planner.plan_cluster(world, PROD)
    assert types(plan) == [EnsureStack]
    step = plan.steps[0]
    assert (step.stack, step.action, step.protect, step.protected, step.service) == \
        ("prod", "create", True, True, False)
    assert dict(step.tags) == {"mvp:managed-by": "mvp-tasks", "mvp:cluster": "prod"}
    assert step.template.label == CLUSTER_TEMPLATE
    assert (plan.key, plan.kind, plan.action, plan.cluster) == ("prod", "cluster", "cluster.up", "prod")
    assert plan.done == "stack created"
    assert plan.needs_confirmation
    lines = plan.lines()
    assert lines[0] == f"+ stack prod from {CLUSTER_TEMPLATE}"
    assert "+ AWS::ECS::Cluster Cluster" in lines
    assert lines[-1] == "~ stack prod: termination protection on"

    plan = planner.plan_cluster(world, STAGE)
    assert (plan.steps[0].protect, plan.steps[0].protected) == (False, False)
    assert not plan.needs_confirmation


def test_cluster_unchanged_is_up_to_date():
    world = make_world()
    for cluster in (STAGE, PROD):
        plan = planner.plan_cluster(world, cluster)
        assert plan.steps == []
        assert plan.note == f"stack {cluster.name} up to date (CREATE_COMPLETE)"
    assert world.stacks().created == []


def test_cluster_unchanged_but_unprotected_turns_protection_on():
    world = make_world([cluster_stack("prod", protection=False)])
    plan = planner.plan_cluster(world, PROD)
    assert types(plan) == [EnsureStack]
    assert (plan.steps[0].action, plan.steps[0].protect) == ("protect", True)
    assert plan.done == "termination protection turned on"
    assert plan.lines() == ["~ stack prod: termination protection on"]
    assert world.stacks().created == []


def test_cluster_configured_parameter_updates_it():
    settings = load_settings(config(clusters={"stage": {"parameters": {"ContainerInsights": "enabled"}}},
                                    projects={}), ROOT)
    stage = settings.clusters["stage"]
    world = make_world([cluster_stack("stage")], settings=settings,
                       changes={"stage": [Change("Modify", "Cluster", "AWS::ECS::Cluster")]})
    plan = planner.plan_cluster(world, stage)
    assert types(plan) == [EnsureStack]
    step = plan.steps[0]
    assert step.action == "update" and dict(step.parameters) == {"ContainerInsights": "enabled"}
    assert step.parameter_changes == (("ContainerInsights", "disabled", "enabled"),)
    assert plan.done == "stack updated"
    assert world.change_sets.pending() == [("stage", step.change_set)]


def test_cluster_after_a_failed_create_is_recreated():
    world = make_world([cluster_stack("stage", status="ROLLBACK_COMPLETE")])
    plan = planner.plan_cluster(world, STAGE)
    assert plan.steps[0].action == "recreate" and plan.steps[0].destructive
    assert plan.done == "stack re-created"


# --- plan_destroy / plan_cluster_down ------------------------------------------------------------


def test_destroy_deletes_the_app_stack():
    stack = app_stack("stage")
    world = clusters_and(stack)
    plan = planner.plan_destroy(world, PROJ, STAGE)
    assert plan.steps == [DeleteStack("museum-adventure-stage", "CREATE_COMPLETE", stack.stack_id, False,
                                      "load balancer, service, task definition, logs", protected=False)]
    assert plan.steps[0].destructive and plan.needs_confirmation
    assert (plan.action, plan.done) == ("destroy", "stack deleted")
    assert plan.lines() == ["- stack museum-adventure-stage (CREATE_COMPLETE): load balancer, service, "
                            "task definition, logs"]


def test_destroy_without_a_stack_is_a_note_and_prod_is_protected():
    plan = planner.plan_destroy(make_world([]), PROJ, STAGE)
    assert plan.steps == [] and plan.note == "no stack museum-adventure-stage; nothing to delete"
    plan = planner.plan_destroy(clusters_and(app_stack("prod", protection=True)), PROJ, PROD)
    assert plan.steps[0].protected and plan.steps[0].termination_protection
    assert plan.lines()[-1] == "~ termination protection off"


def test_cluster_down_deletes_an_empty_cluster():
    prod = cluster_stack("prod")
    world = make_world([cluster_stack("stage"), prod, app_stack("stage")])
    plan = planner.plan_cluster_down(world, PROD)  # stage's app stack does not hold prod up
    assert plan.steps == [DeleteStack("prod", "CREATE_COMPLETE", prod.stack_id, True,
                                      "and everything in it: VPC, subnets, ECS cluster", protected=True)]
    assert (plan.key, plan.kind, plan.action, plan.done) == ("prod", "cluster", "cluster.down", "stack deleted")
    assert plan.lines() == ["- stack prod (CREATE_COMPLETE): and everything in it: VPC, subnets, ECS cluster",
                            "~ termination protection off"]
    assert plan.needs_confirmation


def test_cluster_down_refuses_while_app_stacks_run():
    world = make_world([cluster_stack("stage"), app_stack("stage")])
    with pytest.raises(UsageError) as exc:
        planner.plan_cluster_down(world, STAGE)
    assert exc.value.message == "cluster stage still runs app stacks: museum-adventure-stage"
    assert exc.value.hint == "remove them first with `inv app.destroy NAME --cluster stage`"

    # A stack of a project since removed from invoke.yaml still counts, by its tag.
    orphan = StackInfo("old-app-stage", "id", "CREATE_COMPLETE", tags={"mvp:cluster": "stage"})
    world = make_world([cluster_stack("stage"), orphan])
    with pytest.raises(UsageError, match="still runs app stacks: old-app-stage"):
        planner.plan_cluster_down(world, STAGE)


def test_fleet_orphans_are_targets_a_clusters_after_its_apps_skipped_unless_pruned():
    from mvp_tasks.plan.stacks import MANAGED_TAG

    qa = StackInfo("qa", "id-qa", "CREATE_COMPLETE", tags={**MANAGED_TAG, "mvp:cluster": "qa"})
    app_in_qa = StackInfo(f"{PROJECT}-qa", "id-app", "CREATE_COMPLETE",
                          tags={**MANAGED_TAG, "mvp:project": PROJECT, "mvp:cluster": "qa"})
    world = make_world([cluster_stack("stage"), qa, app_in_qa])
    pairs = planner.plan_orphans(world)
    assert [(stub.key, stub.kind, stub.depends_on) for stub, _ in pairs] == [
        (f"{PROJECT}@qa", "app", ()), ("qa", "cluster", (f"{PROJECT}@qa",))]
    kept = [plan(world) for _, plan in pairs]
    assert [(t.key, t.steps) for t in kept] == [(f"{PROJECT}@qa", []), ("qa", [])]
    assert kept[0].skip.startswith(f"orphan: stack {PROJECT}-qa (CREATE_COMPLETE) remains")
    pruned = [plan(world) for _, plan in planner.plan_orphans(world, prune=True)]
    assert [types(t) for t in pruned] == [[DeleteStack], [DeleteStack]] and pruned[1].depends_on == (f"{PROJECT}@qa",)


def test_fleet_orphans_that_cannot_be_read_are_one_failed_target():
    world = make_world([cluster_stack("stage")])

    def unreadable(key):
        raise StackBusy("DescribeStacks: throttled")

    world.stacks().list_stacks_with_tag = unreadable
    [(stub, plan)] = planner.plan_orphans(world)
    assert (stub.key, stub.kind) == ("orphans", "cluster")
    with pytest.raises(StackBusy, match="throttled"):
        plan(world)


def test_cluster_down_of_a_missing_stack_is_a_note():
    plan = planner.plan_cluster_down(make_world([]), STAGE)
    assert plan.steps == [] and plan.note == "no such stack; nothing to delete"


# --- Plan.question -------------------------------------------------------------------------------


def _deploy(cluster) -> TargetPlan:
    return planner.plan_deploy(make_world(tags={cluster.tag: D1, C1: D1}), PROJ, cluster)


def _destroy(cluster) -> TargetPlan:
    return planner.plan_destroy(clusters_and(app_stack(cluster.name)), PROJ, cluster)


def test_question_none_for_an_unprotected_plan_that_deletes_nothing():
    assert Plan("app.deploy", [_deploy(STAGE)]).question() == ""


def test_question_names_protected_clusters():
    assert Plan("app.deploy", [_deploy(PROD)]).question() == \
        "apply this plan to 1 target(s) (change protected cluster prod)"
    assert Plan("fleet.up", [_deploy(STAGE), _deploy(PROD)]).question() == \
        "apply this plan to 2 target(s) (change protected cluster prod)"
    two = [TargetPlan("a@prod", cluster="prod", steps=[RollService("a-prod", protected=True)]),
           TargetPlan("a@qa", cluster="qa", steps=[RollService("a-qa", protected=True)])]
    assert Plan("x", two).question() == "apply this plan to 2 target(s) (change protected clusters prod, qa)"


def test_question_mentions_deletion():
    assert Plan("app.destroy", [_destroy(STAGE)]).question() == \
        "apply this plan to 1 target(s) (delete what the plan marks with -)"
    assert Plan("app.destroy", [_destroy(PROD)]).question() == \
        "apply this plan to 1 target(s) (change protected cluster prod; delete what the plan marks with -)"


def test_question_confirm_text_wins():
    assert Plan("app.rollback", [_deploy(STAGE)], confirm="roll back stage?").question() == "roll back stage?"
    assert Plan("app.promote", [_deploy(PROD)], confirm="promote?").question() == "promote?"


def test_question_none_when_nothing_changes():
    unchanged = planner.plan_deploy(clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1},
                                                 records={"prod": [rec("deploy", C1, D1, cluster="prod")]}),
                                    PROJ, PROD)
    assert unchanged.steps == []
    assert Plan("app.deploy", [unchanged], confirm="sure?").question() == ""
    failed = _deploy(PROD)
    failed.error = "throttled"
    assert Plan("app.deploy", [failed]).question() == ""
    assert Plan("app.deploy", []).question() == ""


# --- plan_release --------------------------------------------------------------------------------


@pytest.fixture
def release(monkeypatch):
    """plan_release with its git questions answered: `reasons` and the revision HEAD builds."""
    calls = SimpleNamespace(reasons=[], revisions=[], builders=[], answer=[], head=Revision(HEAD, False))

    def get_changed_reasons(settings, project, cluster, deployed, head, memo=None):
        calls.reasons.append((project.name, cluster.name, deployed, head))
        return list(calls.answer)

    def get_revision(root, project, *, for_push, allow_dirty, memo=None):
        calls.revisions.append((root, project.name, for_push, allow_dirty))
        return calls.head

    monkeypatch.setattr("mvp_tasks.plan.changes.get_changed_reasons", get_changed_reasons)
    monkeypatch.setattr("mvp_tasks.image.builder.get_revision", get_revision)

    def run(world, cluster=STAGE, *, reasons=(), local_images=()):
        calls.answer = list(reasons)

        def builder_for():
            builder = FakeBuilder(set(local_images))
            calls.builders.append(builder)
            return builder

        return planner.plan_release(world, builder_for, PROJ, cluster, HEAD, ROOT)

    calls.run = run
    return calls


HEAD_REF = f"{HOST}/{REPO}:{HEAD}"


def test_release_unchanged_since_deployed_is_a_note(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1}, records={"stage": [rec("deploy", C1, D1)]})
    plan = release.run(world)
    assert plan.steps == []
    assert plan.note == f"unchanged since {C1[:12]}"
    assert release.reasons == [(PROJECT, "stage", C1, HEAD)]
    assert release.revisions == [] and release.builders == []  # no git revision, no builder


def test_release_reads_what_runs_from_the_registry_without_history(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1})
    plan = release.run(world)
    assert release.reasons == [(PROJECT, "stage", C1, HEAD)]
    assert plan.note == f"unchanged since {C1[:12]}"


def test_release_changed_builds_pushes_tags_and_rolls(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1}, records={"stage": [rec("deploy", C1, D1)]})
    plan = release.run(world, reasons=["2 file(s) under projects/museum-adventure/"])
    assert plan.steps == [
        BuildImage(PROJECT, HEAD_REF, "linux/amd64", "", revision=Revision(HEAD, False)),
        PushImage(PROJECT, REPO, HEAD, HEAD_REF, RepositoryChanges(REPO)),
        MoveTag(REPO, "stage", HEAD, D1, "", label=HEAD[:12]),
        RollService("museum-adventure-stage"),
    ]
    assert plan.reasons == ("2 file(s) under projects/museum-adventure/",)
    assert (plan.action, plan.commit, plan.digest) == ("release", HEAD, "")
    assert plan.done == f"{HEAD[:12]} released (from {C1[:12]})"  # the release it moves from (issue 17)
    assert plan.lines() == [
        f"~ release {C1[:12]} -> {HEAD[:12]}",  # the commit it moves from and to (issue 17)
        f"+ build {HEAD_REF} for linux/amd64",
        f"+ push {HEAD_REF}",
        f"~ tag stage: {D1[:19]} -> the pushed image ({HEAD[:12]})",
        "~ new deployment of the service",
    ]
    assert release.revisions == [(ROOT, PROJECT, True, False)]
    [builder] = release.builders
    assert builder.closed and builder.docker.engine_checks == 1
    assert world.registry.ensured == [(REPO, True)]


def test_release_with_the_image_in_the_engine_only_pushes(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1}, records={"stage": [rec("deploy", C1, D1)]},
                         repository_changes=RepositoryChanges(REPO, create=True))
    plan = release.run(world, reasons=["x"], local_images={HEAD_REF})
    assert types(plan) == [PushImage, MoveTag, RollService]
    assert plan.steps[0].repository_changes == RepositoryChanges(REPO, create=True)
    assert plan.lines()[:3] == [f"~ release {C1[:12]} -> {HEAD[:12]}", f"+ repository {REPO} (scan on push)",
                                f"+ push {HEAD_REF}"]


def test_release_without_a_stack_creates_it(release):
    world = make_world(tags={"stage": D1, C1: D1}, records={"stage": [rec("deploy", C1, D1)]})
    plan = release.run(world)  # nothing changed, but there is no stack
    assert plan.reasons == ("its stack does not exist",)
    assert types(plan) == [BuildImage, PushImage, MoveTag, EnsureStack]
    assert plan.steps[-1].action == "create" and plan.steps[-1].service


def test_release_with_the_image_already_in_the_registry_neither_builds_nor_pushes(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1, HEAD: D4},
                         records={"stage": [rec("deploy", C1, D1)]})
    plan = release.run(world, reasons=["x"])
    assert plan.steps == [MoveTag(REPO, "stage", HEAD, D1, D4, label=HEAD[:12]),
                          RollService("museum-adventure-stage")]
    assert plan.digest == D4
    # No builder at all (on a build host it would be an SSH connection for nothing).
    assert release.builders == []
    assert world.registry.ensured == []


def test_release_already_released_is_a_note(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D4, HEAD: D4}, records={"stage": [rec("release", HEAD, D4)]})
    plan = release.run(world, reasons=["x"])
    assert plan.steps == []
    assert plan.note == f"{HEAD[:12]} already released"


def test_release_with_changed_parameters_updates_and_rolls(release):
    world = clusters_and(app_stack("stage", DesiredCount="2"), tags={"stage": D1, C1: D1, HEAD: D4},
                         records={"stage": [rec("deploy", C1, D1)]},
                         changes={"museum-adventure-stage": [Change("Modify", "Service", "AWS::ECS::Service")]})
    plan = release.run(world, reasons=["x"])
    assert types(plan) == [MoveTag, EnsureStack, RollService]
    assert plan.steps[1].action == "update"
    assert plan.steps[1].parameter_changes == (("DesiredCount", "2", "1"),)


def test_release_to_prod_is_protected(release):
    world = clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1, HEAD: D4},
                         records={"prod": [rec("deploy", C1, D1, cluster="prod")]})
    plan = release.run(world, PROD, reasons=["x"])
    assert plan.steps == [MoveTag(REPO, "prod", HEAD, D1, D4, label=HEAD[:12], protected=True),
                          RollService("museum-adventure-prod", protected=True)]
    assert plan.needs_confirmation


def test_fake_world_change_sets_are_the_real_ones():
    assert isinstance(make_world().change_sets, ChangeSets)


def test_a_secret_step_never_shows_its_value():
    from mvp_tasks.plan.steps import PutSecret

    step = PutSecret("web", "stage", "API_KEY", "s3cr3t-value", exists=True)
    shown = " ".join([repr(step), str(step), step.summary(), *step.lines()])
    assert "s3cr3t-value" not in shown
    assert step.lines() == ["~ secret API_KEY (value not shown)"]
    assert not step.locks and PutSecret("web", "stage", "K", "a") == PutSecret("web", "stage", "K", "b")


def test_deploy_preflight_names_every_problem_at_once():
    # No image for the cluster's tag AND a configured secret not set: both in one error, not one a run.
    settings = load_settings(config(projects={PROJECT: {"clusters": ["stage", "prod"], "secrets": ["API_KEY"]}}),
                             ROOT)
    world = make_world(tags={C1: D1}, settings=settings)
    world.secrets = lambda: SimpleNamespace(list=lambda cluster, project: [])
    with pytest.raises(BuildError) as exc:
        planner.plan_deploy(world, settings.projects[PROJECT], settings.clusters["stage"])
    message = str(exc.value)
    assert f"image {HOST}/{REPO}:stage does not exist" in message
    assert f"secret API_KEY of {PROJECT} is configured but not set in stage" in message
    assert "inv app.secret.set museum-adventure API_KEY --cluster stage" in message


def test_preflight_with_one_problem_raises_it_as_it_is():
    def missing():
        raise UsageError("only this", "fix it")

    with pytest.raises(UsageError) as exc:
        planner.preflight(lambda: 1, missing)
    assert (exc.value.message, exc.value.hint) == ("only this", "fix it")
    assert planner.preflight(lambda: 1, lambda: "two") == [1, "two"]


# --- issue 17: a promote skips a commit marked bad; app.unmark clears the mark ----------------------


def test_promote_skips_a_commit_a_rollback_marked_bad_and_names_the_unmark_command():
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D1, C1: D1, C2: D2},
                         records={"prod": [rec("rollback", C1, D1, cluster="prod"), rec("promote", C2, D2, cluster="prod"),
                                           rec("promote", C1, D1, cluster="prod")]})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert plan.steps == [] and not plan.changes
    assert plan.skip.startswith(f"{C2[:12]} is marked bad for {PROJECT} in prod")
    assert f"inv app.unmark {PROJECT} --cluster prod --commit {C2[:12]}" in plan.skip


def test_unmark_plans_one_clear_mark_step_and_says_when_there_is_no_mark():
    from mvp_tasks.plan.steps import ClearMark

    records = [rec("rollback", C1, D1, cluster="prod"), rec("promote", C2, D2, cluster="prod"),
               rec("promote", C1, D1, cluster="prod")]
    world = clusters_and(app_stack("prod"), tags={"prod": D1, C1: D1, C2: D2}, records={"prod": records})
    plan = planner.plan_unmark(world, PROJ, PROD, C2[:8])
    assert types(plan) == [ClearMark] and plan.steps[0].commit == C2 and plan.action == "unmark"
    assert plan.steps[0].locks  # under the app's deploy lock, like every change to what may ship
    assert plan.lines()[0].startswith(f"- bad mark of {C2[:12]} for {PROJECT} in prod")
    none = planner.plan_unmark(world, PROJ, PROD, C1)
    assert none.steps == [] and none.note.startswith(f"{C1[:12]} is not marked bad")
    with pytest.raises(UsageError):
        planner.plan_unmark(world, PROJ, PROD, "not-a-sha")


# --- a service a rollback left behind its stack ----------------------------------------------------
# A rollout of a stack's release that fails (or is stopped) is rolled back: ECS returns the service to
# the task definition it ran before, while the stack keeps naming the one its update registered. A
# plan that leaves the stack as it is updates the service to the stack's task definition.


def td(cluster: str, revision: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:task-definition/{PROJECT}-{cluster}:{revision}"


def stack_naming(cluster: str, revision: int | None, **parameters: str) -> StackInfo:
    """The app stack with its TaskDefinitionArn output (the studio's template has one) naming
    `revision`; None: without that output."""
    import dataclasses

    stack = app_stack(cluster, **parameters)
    if revision is None:
        return stack
    return dataclasses.replace(stack, outputs={**stack.outputs, "TaskDefinitionArn": td(cluster, revision)})


def task_definition_resource(cluster: str, revision: int):
    from mvp_tasks.aws.stacks import StackResource

    return StackResource("TaskDefinition", "AWS::ECS::TaskDefinition", td(cluster, revision), "UPDATE_COMPLETE")


def behind_world(running: int, named: int | None, resource: int | None = None, cluster: str = "stage",
                 **kw: Any) -> FakeWorld:
    """`cluster`'s app stack unchanged, rolled out (the tag names what it last rolled out); its service runs
    revision `running`, its output names `named`, its TaskDefinition resource is `resource`."""
    kw.setdefault("tags", {cluster: D1, C1: D1, "stage": D1})
    kw.setdefault("records", {cluster: [rec("deploy", C1, D1, cluster=cluster)]})
    world = clusters_and(stack_naming(cluster, named), services={
        (cluster, f"{PROJECT}-{cluster}"): (3, 3, td(cluster, running))}, **kw)
    if resource is not None:
        world.stacks().resources[f"{PROJECT}-{cluster}"] = [task_definition_resource(cluster, resource)]
    return world


REASON = (f"service {PROJECT}-stage runs {PROJECT}-stage:7, not {PROJECT}-stage:8 that its stack registered "
          f"(a rollout of it failed or was stopped, and the service was rolled back): the release is out once the "
          f"service runs {PROJECT}-stage:8")


def test_deploy_of_an_unchanged_stack_updates_a_service_left_behind_to_the_stacks_task_definition():
    world = behind_world(running=7, named=8, resource=8)
    plan = planner.plan_deploy(world, PROJ, STAGE)
    [step] = plan.steps
    assert step == RollService(f"{PROJECT}-stage", task_definition=td("stage", 8), running=td("stage", 7))
    assert step.names == ("stage", f"{PROJECT}-stage")
    assert plan.lines() == [f"~ service {PROJECT}-stage: runs {PROJECT}-stage:7, the stack {PROJECT}-stage:8 "
                            f"-> {PROJECT}-stage:8"]
    assert plan.reasons == (REASON,)
    assert (step.summary(), step.done()) == (f"update the service to {PROJECT}-stage:8",
                                            f"updated the service to {PROJECT}-stage:8")
    assert plan.note == "" and plan.changes and not plan.needs_confirmation
    # The output disagreed with what runs: the stack's resource had the last word, read once.
    assert world.stacks().listed == [f"{PROJECT}-stage"]
    assert world.services().reads == [("stage", f"{PROJECT}-stage")]


def test_deploy_of_an_unchanged_app_whose_service_runs_the_stacks_task_definition_reads_it_once():
    world = behind_world(running=8, named=8)
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == [] and plan.reasons == ()
    assert plan.note == f"running {C1[:12]}, 3/3 tasks"
    # One DescribeServices for the check and the note; the output named what runs: no ListStackResources.
    assert world.services().reads == [("stage", f"{PROJECT}-stage")]
    assert world.stacks().listed == []


@pytest.mark.parametrize("named, resource, behind", [
    (None, 8, True),  # no output: the resource says
    (None, 7, False),
    (8, None, True),  # no resource listed (a task definition outside the stack): the output says
    (7, 8, False),  # the output names what runs: taken as it is (no call)
    (6, 7, False),  # the output lags behind (an emulator): the resource has the last word
    (None, None, False),  # the stack names none: nothing to compare
])
def test_which_task_definition_the_stack_registered(named, resource, behind):
    world = behind_world(running=7, named=named, resource=resource)
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert [s.task_definition for s in plan.steps] == ([td("stage", named or resource)] if behind else [])


def test_a_stack_with_several_task_definitions_is_judged_by_the_family_the_service_runs():
    from mvp_tasks.aws.stacks import StackResource

    world = behind_world(running=7, named=None)
    world.stacks().resources[f"{PROJECT}-stage"] = [
        StackResource("Migrate", "AWS::ECS::TaskDefinition",
                      "arn:aws:ecs:us-east-1:123456789012:task-definition/migrate:3", "CREATE_COMPLETE"),
        task_definition_resource("stage", 8)]
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert [s.task_definition for s in plan.steps] == [td("stage", 8)]


def test_a_moved_tag_and_a_service_left_behind_are_one_update_of_the_service():
    # The tag names another image than the service last rolled out: the update pulls it too.
    world = behind_world(running=7, named=8, resource=8, tags={"stage": D2, C1: D1, C2: D2})
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert plan.steps == [RollService(f"{PROJECT}-stage", task_definition=td("stage", 8), running=td("stage", 7))]


def test_a_stack_update_is_not_judged_by_what_its_service_ran_before():
    # The update registers the task definition the service is then given (CloudFormation does it).
    changes = [Change("Modify", "TaskDefinition", "AWS::ECS::TaskDefinition", "True")]
    world = behind_world(running=7, named=8, resource=8, changes={f"{PROJECT}-stage": changes})
    world.stacks().stacks[f"{PROJECT}-stage"] = stack_naming("stage", 8, DesiredCount="2")
    plan = planner.plan_deploy(world, PROJ, STAGE)
    assert types(plan) == [EnsureStack]
    assert plan.reasons == () and world.services().reads == []


def test_fleet_up_of_the_release_the_stack_holds_updates_the_service_left_behind():
    plan = planner.plan_fleet_app(behind_world(running=7, named=8, resource=8), PROJ, STAGE)
    assert [(type(s), s.task_definition) for s in plan.steps] == [(RollService, td("stage", 8))]


def test_release_of_a_commit_whose_stack_is_up_to_date_updates_the_service_left_behind(release):
    # ci.release again after its rollout failed: the stack holds HEAD's release already.
    world = behind_world(running=7, named=8, resource=8, tags={"stage": D1, C1: D1, HEAD: D4})
    plan = release.run(world, reasons=["x"])
    assert plan.steps == [MoveTag(REPO, "stage", HEAD, D1, D4, label=HEAD[:12]),
                          RollService(f"{PROJECT}-stage", task_definition=td("stage", 8), running=td("stage", 7))]
    assert plan.reasons == ("x", REASON)


def test_release_unchanged_since_what_runs_judges_no_service(release):
    # Not compared with the release here: the stack may hold a release that failed since.
    world = behind_world(running=7, named=8, resource=8)
    plan = release.run(world)
    assert plan.steps == [] and plan.note == f"unchanged since {C1[:12]}"
    assert world.services().reads == []


def test_promote_of_what_runs_updates_the_service_left_behind_instead_of_saying_already_runs():
    world = behind_world(running=7, named=8, resource=8, cluster="prod", tags={"stage": D2, "prod": D2, C2: D2},
                         records={"prod": [rec("promote", C2, D2, cluster="prod")]})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert plan.steps == [RollService(f"{PROJECT}-prod", task_definition=td("prod", 8), running=td("prod", 7),
                                      protected=True)]
    assert plan.note == "" and plan.needs_confirmation


def test_rollback_to_what_runs_updates_the_service_left_behind():
    world = behind_world(running=7, named=8, resource=8, tags=ROLLBACK_TAGS, records={})
    plan = planner.plan_rollback(world, PROJ, STAGE, to=C3[:10])
    assert plan.steps == [RollService(f"{PROJECT}-stage", task_definition=td("stage", 8), running=td("stage", 7))]


@pytest.mark.parametrize("cluster, command", [
    (STAGE, f"inv app.deploy {PROJECT} --cluster stage"),
    (PROD, f"inv app.promote {PROJECT} --tag prod"),  # prod takes its releases from stage
])
def test_update_rolls_what_runs_and_warns_of_a_service_left_behind(cluster, command):
    # app.update does not judge the stack: it may hold a release whose image the tag no longer names.
    world = behind_world(running=7, named=8, resource=8, cluster=cluster.name)
    plan = planner.plan_update(world, PROJ, cluster)
    [step] = plan.steps
    assert step.task_definition == "" and step.lines()[0].startswith("~ new deployment of the service")
    name = f"{PROJECT}-{cluster.name}"
    assert plan.warnings == (f"service {name} runs {name}:7, not {name}:8 that its stack registered (a rollout of "
                             f"it failed or was stopped, and the service was rolled back): this update rolls "
                             f"{name}:7 again; `{command}` gets the stack's release out",)

# --- one read of an app's history per planning (a DynamoDB Query each) ---------------------------


def reads(world: FakeWorld, cluster: str) -> list[tuple[str, int]]:
    return world._histories[cluster].reads


def test_release_reads_the_history_once_for_what_runs_the_bad_marks_and_the_last_rollout(release):
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1, HEAD: D4},
                         records={"stage": [rec("deploy", C1, D1)]})
    plan = release.run(world, reasons=["x"])
    assert types(plan) == [MoveTag, RollService]  # HEAD's image is D4, and D1 rolled out last
    # What runs and the last rollout ask for 50 records, the bad marks for 100: the 1 record read
    # is the whole history.
    assert reads(world, "stage") == [(PROJECT, 50)]


def test_a_later_question_for_more_records_than_a_full_first_read_reads_again(release):
    history = [rec("deploy", C1, D1)] + [rec("update", C1, D1)] * 59
    world = clusters_and(app_stack("stage"), tags={"stage": D1, C1: D1, HEAD: D4}, records={"stage": history})
    assert types(release.run(world, reasons=["x"])) == [MoveTag, RollService]
    # 50 of 60 came back: the bad marks (the newest 100) need the longer read, once; the last rollout
    # is answered from it.
    assert reads(world, "stage") == [(PROJECT, 50), (PROJECT, 100)]


def test_promote_reads_each_clusters_history_once():
    world = clusters_and(app_stack("prod"), tags={"stage": D2, "prod": D1, C1: D1, C2: D2},
                         records={"stage": [rec("release", C2, D2)],
                                  "prod": [rec("promote", C1, D1, cluster="prod")]})
    plan = planner.plan_promote(world, PROJ, PROD, source_tag="stage")
    assert types(plan) == [MoveTag, RollService]
    assert reads(world, "stage") == [(PROJECT, 50)]  # which commit stage runs
    assert reads(world, "prod") == [(PROJECT, 50)]  # what prod runs and last rolled out, its bad marks


def test_rollback_reads_the_history_once():
    records = [rec("deploy", C3, D3), rec("deploy", C1, D1)]
    world = clusters_and(app_stack("stage"), tags=ROLLBACK_TAGS, records={"stage": records})
    plan = planner.plan_rollback(world, PROJ, STAGE)
    assert types(plan) == [MoveTag, RollService]
    assert reads(world, "stage") == [(PROJECT, 100)]


def test_fleet_deploy_of_what_runs_reads_the_history_once():
    world = clusters_and(app_stack("stage"), tags={"stage": D2, C2: D2},
                         records={"stage": [rec("deploy", C1, D1), rec("deploy", C2, D2)]})
    plan = planner.plan_deploy(world, PROJ, STAGE, running=True)
    assert (plan.commit, types(plan)) == (C2, [RollService])  # its released commit, and it rolls: D1 last rolled
    assert reads(world, "stage") == [(PROJECT, 50)]


def test_a_failed_history_read_is_not_kept():
    store = FakeHistory([rec("deploy", C1, D1)])
    answers = [MvpError("throttled")]

    def flaky():
        if answers:
            raise answers.pop()
        return store

    history = planner._History(flaky, PROJECT)
    with pytest.raises(MvpError):
        history.get_records(PROJECT)
    assert history.get_current(PROJECT).commit == C1 and history.get_records(PROJECT, limit=100)
    assert store.reads == [(PROJECT, 50)]
