"""The rollback offered for a rollout a run stopped half-way: how it is planned against the service
as it is now, and how its outcome is told on the interrupted target (unit: plain values, no AWS)."""

from __future__ import annotations

from types import SimpleNamespace

from mvp_tasks.aws.services import Deployment, ServiceState
from mvp_tasks.plan.planner import plan_rollback_offer
from mvp_tasks.plan.steps import Action, RollBackService
from mvp_tasks.report import Outcome, Result, Results
from mvp_tasks.tasks.boundary import _merge_rollbacks

OLD = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7"
NEW = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:8"
OFFER = RollBackService("web", "stage", ("stage-cluster", "web-stage"), "ecs-svc/new", NEW, OLD)


def deployment(id_: str, status: str, state: str, task_definition: str) -> Deployment:
    return Deployment(id_, status, state, "", 2, 0, 2, 0, task_definition)


def world_with(state: ServiceState | None):
    return SimpleNamespace(services=lambda: SimpleNamespace(get_service=lambda cluster, service: state))


def service(*deployments: Deployment) -> ServiceState:
    return ServiceState("web-stage", "stage-cluster", "ACTIVE", 2, 2, 0, deployments[0].task_definition,
                        deployments=deployments)


def test_a_rollout_still_under_way_is_offered_its_rollback():
    state = service(deployment("ecs-svc/new", "PRIMARY", "IN_PROGRESS", NEW),
                    deployment("ecs-svc/old", "ACTIVE", "COMPLETED", OLD))

    plan = plan_rollback_offer(world_with(state), OFFER)

    assert plan.key == "web@stage" and plan.action is Action.SERVICE_ROLLBACK
    assert plan.steps == [OFFER]
    assert plan.lines() == ["~ service web-stage: roll deployment ecs-svc/new (web:8) back to web:7"]
    assert plan.done == "rolled back: service web-stage runs web:7 again"


def test_nothing_is_offered_once_the_rollout_completed_or_was_replaced_or_the_service_is_gone():
    completed = service(deployment("ecs-svc/new", "PRIMARY", "COMPLETED", NEW))
    replaced = service(deployment("ecs-svc/newer", "PRIMARY", "IN_PROGRESS", NEW),
                       deployment("ecs-svc/new", "ACTIVE", "IN_PROGRESS", NEW))

    for state, said in ((completed, "completed meanwhile"), (replaced, "is not the service's any more"),
                        (None, "is gone")):
        plan = plan_rollback_offer(world_with(state), OFFER)
        assert plan.steps == [] and said in plan.note, plan.note


def test_the_rollbacks_outcome_is_told_on_the_interrupted_target_and_what_runs_on_is_updated():
    results = Results(interrupted=True, still_running={"service web-stage: rollout": "inv app.wait web --cluster stage",
                                                       "stack api-stage: update": "inv app.status api"})
    results.add(Result("web@stage", Outcome.FAILED, "interrupted", "abc", 1.0, OFFER))
    results.add(Result("api@stage", Outcome.FAILED, "interrupted", "def", 1.0))
    more = Results()
    more.add(Result("web@stage", Outcome.CHANGED, "rolled back: service web-stage runs web:7 again"))

    _merge_rollbacks(results, more)

    assert [(r.target, r.outcome, r.message) for r in results.results] == [
        ("web@stage", Outcome.FAILED, "interrupted; then rolled back: service web-stage runs web:7 again"),
        ("api@stage", Outcome.FAILED, "interrupted")]
    assert results.still_running == {"stack api-stage: update": "inv app.status api"}
    assert results.interrupted


def test_a_failed_rollback_is_told_and_its_rollout_still_runs():
    results = Results(interrupted=True, still_running={"service web-stage: rollout": "inv app.wait web --cluster stage"})
    results.add(Result("web@stage", Outcome.FAILED, "interrupted", "abc", 1.0, OFFER))
    more = Results()
    more.add(Result("web@stage", Outcome.FAILED, "lost the deploy lock"))

    _merge_rollbacks(results, more)

    assert results.results[0].message == "interrupted; then the rollback failed: lost the deploy lock"
    assert "service web-stage: rollout" in results.still_running
