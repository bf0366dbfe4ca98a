"""`app.logs` (mvp_tasks/status/logs.py and aws/logs.py) against botocore's Stubber for CloudWatch
Logs: the lines printed, every page read, a window with no lines said in one line, a log group
that does not exist said in words. The end-to-end tests (tests/e2e/test_adopt.py,
tests/e2e/test_lifecycle.py) run the real thing against moto.
"""

from __future__ import annotations

import io
import time
import types

from mvp_tasks.aws.logs import Logs

import pytest
from botocore.stub import ANY, Stubber

from mvp_tasks.errors import AwsError
from mvp_tasks.memo import Memo
from mvp_tasks.report import Reporter
from mvp_tasks.status import logs
from stubs import isolate_from_aws, make_client

APP, CLUSTER = "museum-adventure", "stage"
GROUP = f"/ecs/{APP}-{CLUSTER}"


@pytest.fixture
def cwl(monkeypatch):
    isolate_from_aws(monkeypatch)
    client = make_client("logs")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def make_world(client) -> tuple[types.SimpleNamespace, io.StringIO]:
    stack = types.SimpleNamespace(name=f"{APP}-{CLUSTER}", status="CREATE_COMPLETE", stack_id="id", created=None,
                                  last_updated=None, outputs={"LogGroupName": GROUP})
    project = types.SimpleNamespace(name=APP, stack_name=lambda cluster: f"{APP}-{cluster}")
    cluster = types.SimpleNamespace(name=CLUSTER, stack_name=CLUSTER)
    settings = types.SimpleNamespace(project=lambda name: project, cluster=lambda name: cluster, poll_interval=1)
    stream = io.StringIO()
    world = types.SimpleNamespace(settings=settings, memo=Memo(), aws=types.SimpleNamespace(logs=client),
                                  reporter=Reporter(stream=stream, interactive=False),
                                  stacks=lambda: types.SimpleNamespace(get_stack=lambda name: stack),
                                  logs=lambda: Logs(client))
    return world, stream


def event(n: int, message: str, at_ms: int) -> dict:
    return {"eventId": f"e{n}", "timestamp": at_ms, "message": message + "\n",
            "logStreamName": "web/web/0123456789abcdef0123456789abcdef", "ingestionTime": at_ms}


def test_every_page_of_the_window_is_printed_one_line_an_event(cwl):
    client, stubber = cwl
    now = int(time.time() * 1000)
    stubber.add_response("filter_log_events", {"events": [event(1, "GET / 200", now - 2000)], "nextToken": "t2"},
                         {"logGroupName": GROUP, "startTime": ANY})
    stubber.add_response("filter_log_events", {"events": [event(2, "GET /visit 200", now - 1000)]},
                         {"logGroupName": GROUP, "startTime": ANY, "nextToken": "t2"})
    world, stream = make_world(client)

    logs.print_logs(world, APP, None, "5m", follow=False)

    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[1:] for line in lines] == [["01234567", "GET / 200"], ["01234567", "GET /visit 200"]]


def test_a_window_with_no_lines_says_so_in_one_line(cwl):
    client, stubber = cwl
    stubber.add_response("filter_log_events", {"events": []}, {"logGroupName": GROUP, "startTime": ANY})
    world, stream = make_world(client)

    logs.print_logs(world, APP, None, "10m", follow=False)

    assert stream.getvalue().splitlines() == [f"  no log lines of {APP} in {CLUSTER} since 10m (log group {GROUP})"]


def test_a_log_group_that_does_not_exist_is_said_in_words(cwl):
    client, stubber = cwl
    stubber.add_client_error("filter_log_events", service_error_code="ResourceNotFoundException",
                             service_message="The specified log group does not exist.", http_status_code=400)
    world, _ = make_world(client)

    with pytest.raises(AwsError) as caught:
        logs.print_logs(world, APP, None, "10m", follow=False)
    assert caught.value.message == f"log group {GROUP} does not exist"
