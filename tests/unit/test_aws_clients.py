"""`AwsClients`: one boto3 session per run, each client made once (under a lock) and shared by
every thread: boto3 clients are thread-safe, sessions are not."""

from __future__ import annotations

import threading

import boto3
import pytest
from stubs import isolate_from_aws

from mvp_tasks.aws.clients import MAX_POOL, AwsClients, AwsTarget


@pytest.fixture
def clients(monkeypatch):
    isolate_from_aws(monkeypatch)
    made = []
    real = boto3.Session

    def counting_session(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(boto3, "Session", counting_session)
    aws = AwsClients(AwsTarget(region="us-east-1", endpoint_url="http://127.0.0.1:9", sandbox=True))
    aws.sessions_made = made
    return aws


def test_every_thread_gets_the_same_client_from_one_session(clients):
    seen: list = []
    start = threading.Barrier(8)

    def work():
        start.wait()  # all eight ask at once: the lock makes one client, not eight
        seen.append((clients.ecs, clients.dynamodb))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(seen) == 8
    assert len({id(ecs) for ecs, _ in seen}) == 1 and len({id(ddb) for _, ddb in seen}) == 1
    assert len(clients.sessions_made) == 1
    assert clients.ecs is not clients.dynamodb
    assert clients.cloudformation is clients.client("cloudformation")


def test_a_client_keeps_a_connection_for_every_target_that_may_call_at_once(clients):
    config = clients.ecs.meta.config
    assert config.max_pool_connections == MAX_POOL >= 64
    assert config.retries["mode"] == "standard"
    assert clients.ecs.meta.endpoint_url == "http://127.0.0.1:9"
