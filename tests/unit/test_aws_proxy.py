"""tests/support/aws_proxy.py: forwarding, fault injection and counting, against the real moto
server of tests/conftest.py (through the `aws` fixture) with real boto3 clients.

Timing assertions are lower bounds only (the machine is noisy); the few joins with a timeout are
liveness checks with generous limits.
"""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.retries import standard

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is no package: bare `pytest` does not put the root on sys.path
    sys.path.insert(0, str(ROOT))

from tests.support.aws_proxy import AwsProxy, Call, identify, is_mutating  # noqa: E402
from tests.support.signals import Child, as_background_job, dispositions  # noqa: E402

TEMPLATE = json.dumps({"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}})
ECS = "AmazonEC2ContainerServiceV20141113"
AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc")


def client(url: str, service: str, **retries):
    """A boto3 client for `url`: no retry at all unless `retries` says otherwise."""
    read_timeout = retries.pop("read_timeout", 60)
    config = Config(retries=retries or {"mode": "standard", "total_max_attempts": 1},
                    connect_timeout=5, read_timeout=read_timeout)
    return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing", config=config)


def is_throttling(cl, operation: str, exc: ClientError) -> bool:
    """What botocore's standard retry mode decides for this error (retries/standard.py)."""
    context = standard.RetryContext(
        attempt_number=1,
        operation_model=cl.meta.service_model.operation_model(operation),
        parsed_response=exc.response,
        http_response=SimpleNamespace(status_code=exc.response["ResponseMetadata"]["HTTPStatusCode"]),
    )
    return standard.ThrottlingErrorDetector(None).is_throttling_error_from_context(context)


def create_table(ddb, name: str = "t") -> None:
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")


@pytest.fixture
def proxy(aws):
    with AwsProxy(aws.endpoint) as p:
        yield p


# --- recognising calls (no network) ---------------------------------------------------------------

def test_identify_json_target():
    headers = {"X-Amz-Target": f"{ECS}.DescribeServices", "Content-Type": "application/x-amz-json-1.1"}
    assert identify("POST", "/", headers, b"{}") == ("ecs", "DescribeServices", "json")
    headers["Authorization"] = AUTH.format("ecs")
    assert identify("POST", "/", headers, b"{}") == ("ecs", "DescribeServices", "json")
    ecr = {"X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.PutImage", "Authorization": AUTH.format("ecr")}
    assert identify("POST", "/", ecr, b"{}") == ("ecr", "PutImage", "json")


def test_identify_query_protocol_from_body_or_query_string():
    headers = {"Authorization": AUTH.format("cloudformation"),
               "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    body = b"Action=DescribeStacks&Version=2010-05-15&StackName=a"
    assert identify("POST", "/", headers, body) == ("cloudformation", "DescribeStacks", "query")
    assert identify("GET", "/?Action=GetCallerIdentity&Version=2011-06-15",
                    {"Authorization": AUTH.format("sts")}, b"") == ("sts", "GetCallerIdentity", "query")
    presigned = "/?Action=GetCallerIdentity&X-Amz-Credential=testing%2F20260101%2Fus-east-1%2Fsts%2Faws4_request"
    assert identify("GET", presigned, {}, b"") == ("sts", "GetCallerIdentity", "query")


def test_identify_sigv4a_rest_and_unknown():
    sigv4a = {"Authorization": "AWS4-ECDSA-P256-SHA256 Credential=testing/20260101/s3/aws4_request, x=y"}
    assert identify("PUT", "/bucket/key?x=1", sigv4a, b"data") == ("s3", "PUT /bucket/key", "rest")
    assert identify("POST", "/moto-api/reset", {}, b"") == ("unknown", "POST /moto-api/reset", "rest")


def test_is_mutating():
    assert not is_mutating(("ecs", "DescribeServices"))
    assert not is_mutating(Call("cloudformation", "ListStacks", "throttle"))
    assert not is_mutating(("dynamodb", "BatchGetItem")) and not is_mutating(("dynamodb", "Query"))
    assert not is_mutating(("sts", "GetCallerIdentity")) and not is_mutating(("logs", "FilterLogEvents"))
    assert is_mutating(("cloudformation", "CreateChangeSet")) and is_mutating(("dynamodb", "PutItem"))
    assert is_mutating(("ecs", "UpdateService"))
    assert not is_mutating(("s3", "GET /bucket")) and is_mutating(("s3", "PUT /bucket/key"))


def test_settings_are_checked():
    with pytest.raises(ValueError):
        AwsProxy("http://127.0.0.1:1", faults=("throttle", "teapot"))
    with pytest.raises(ValueError):
        AwsProxy("http://127.0.0.1:1", fault_rate=1.5)
    with pytest.raises(ValueError):
        AwsProxy("127.0.0.1:1")
    with pytest.raises(RuntimeError):
        AwsProxy("http://127.0.0.1:1").url  # noqa: B018


# --- forwarding -----------------------------------------------------------------------------------

class Echo:
    """An upstream that records each request and answers 418 with odd headers and a chunked body."""

    def __init__(self):
        self.seen: list[dict] = []
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_PATCH(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                echo.seen.append({"method": self.command, "path": self.path,
                                  "headers": list(self.headers.items()), "body": body})
                self.send_response(418, "I'm a teapot")
                self.send_header("X-Custom", "one")
                self.send_header("Set-Cookie", "a=1")
                self.send_header("Set-Cookie", "b=2")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in (b"short and ", b"stout"):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo():
    upstream = Echo()
    yield upstream
    upstream.close()


@pytest.mark.parametrize("preserve_host", [True, False])
def test_forwards_request_and_answer_unchanged(echo, preserve_host):
    with AwsProxy(echo.url, preserve_host=preserve_host) as proxy:
        netloc = proxy.url.split("//", 1)[1]
        conn = http.client.HTTPConnection(netloc, timeout=10)
        # The second request is chunked, and rides the same keep-alive connections.
        for body in (b"\x00binary body\xff", iter([b"\x00binary ", b"body\xff"])):
            conn.request("PATCH", "/a/b?x=1&y=%2F", body=body,
                         headers={"X-Amz-Target": f"{ECS}.TagResource", "X-Odd": "v1"})
            response = conn.getresponse()
            assert (response.status, response.reason) == (418, "I'm a teapot")
            assert response.read() == b"short and stout"
            assert response.getheader("X-Custom") == "one"
            assert [v for k, v in response.getheaders() if k == "Set-Cookie"] == ["a=1", "b=2"]
        conn.close()
        assert proxy.calls == [("ecs", "TagResource", None)] * 2
    assert [seen["body"] for seen in echo.seen] == [b"\x00binary body\xff"] * 2
    seen = echo.seen[0]
    assert (seen["method"], seen["path"]) == ("PATCH", "/a/b?x=1&y=%2F")
    headers = dict(seen["headers"])
    assert headers["X-Odd"] == "v1" and headers["X-Amz-Target"] == f"{ECS}.TagResource"
    assert headers["Host"] == (netloc if preserve_host else echo.url.split("//", 1)[1])


@pytest.mark.parametrize("preserve_host", [True, False])
def test_forwards_aws_calls_and_counts(aws, preserve_host):
    with AwsProxy(aws.endpoint, preserve_host=preserve_host) as proxy:
        url = proxy.url
        cfn = client(url, "cloudformation")
        cfn.create_stack(StackName="s", TemplateBody=TEMPLATE)
        assert cfn.describe_stacks(StackName="s")["Stacks"][0]["StackName"] == "s"
        ecs = client(url, "ecs")
        ecs.create_cluster(clusterName="stage")
        assert ecs.describe_clusters(clusters=["stage"])["clusters"][0]["clusterName"] == "stage"
        ddb = client(url, "dynamodb")
        create_table(ddb)
        ddb.put_item(TableName="t", Item={"k": {"S": "a"}, "v": {"S": "b"}})
        assert ddb.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"]["v"] == {"S": "b"}
        assert client(url, "ecr").create_repository(repositoryName="repo")["repository"]["repositoryName"] == "repo"
        logs = client(url, "logs")
        logs.create_log_group(logGroupName="g")
        assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == ["g"]
        assert client(url, "sts").get_caller_identity()["Account"] == "123456789012"

        assert proxy.counts() == Counter({
            "cloudformation:CreateStack": 1, "cloudformation:DescribeStacks": 1,
            "ecs:CreateCluster": 1, "ecs:DescribeClusters": 1,
            "dynamodb:CreateTable": 1, "dynamodb:PutItem": 1, "dynamodb:GetItem": 1,
            "ecr:CreateRepository": 1, "logs:CreateLogGroup": 1, "logs:DescribeLogGroups": 1,
            "sts:GetCallerIdentity": 1,
        })
        assert all(call.fault is None for call in proxy.calls)
        assert proxy.calls[0] == ("cloudformation", "CreateStack", None)
        assert [c.key for c in proxy.mutating_calls()] == [
            "cloudformation:CreateStack", "ecs:CreateCluster", "dynamodb:CreateTable", "dynamodb:PutItem",
            "ecr:CreateRepository", "logs:CreateLogGroup"]
        proxy.reset_counts()
        assert proxy.calls == [] and proxy.counts() == Counter()
    # Really in the emulator, not only in the proxy's answers.
    assert aws.client("ecs").describe_clusters(clusters=["stage"])["clusters"][0]["status"] == "ACTIVE"


def test_aws_endpoint_url_and_concurrent_clients(proxy, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    ecs, sts = session.client("ecs", config=config), session.client("sts", config=config)
    errors = []

    def work(i):
        try:
            ecs.create_cluster(clusterName=f"c{i}")
            sts.get_caller_identity()
        except Exception as exc:  # reported below, from the main thread
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert proxy.counts() == Counter({"ecs:CreateCluster": 8, "sts:GetCallerIdentity": 8})
    assert len(ecs.list_clusters()["clusterArns"]) == 8


def test_stopped_proxy_serves_no_more(proxy):
    sts = client(proxy.url, "sts")
    sts.get_caller_identity()
    proxy.stop()
    with pytest.raises((HTTPClientError, BotoConnectionError)):
        sts.get_caller_identity()  # the pooled keep-alive connection is gone too
    assert len(proxy.calls) == 1


# --- throttling -----------------------------------------------------------------------------------

THROTTLED = [
    # service, operation, call, the error code the client sees
    ("cloudformation", "DescribeStacks", lambda c: c.describe_stacks(), "Throttling"),
    ("sts", "GetCallerIdentity", lambda c: c.get_caller_identity(), "Throttling"),
    ("ecs", "ListClusters", lambda c: c.list_clusters(), "ThrottlingException"),
    ("dynamodb", "ListTables", lambda c: c.list_tables(), "ThrottlingException"),
    ("logs", "DescribeLogGroups", lambda c: c.describe_log_groups(), "ThrottlingException"),
]


@pytest.mark.parametrize("service,operation,call,code", THROTTLED, ids=[t[0] for t in THROTTLED])
def test_throttle_is_what_botocore_calls_throttling(aws, service, operation, call, code):
    with AwsProxy(aws.endpoint, fault_rate=1.0, faults=("throttle",)) as proxy:
        # Config(retries={"max_attempts": N}) counts RETRIES: 1 means two attempts in all.
        cl = client(proxy.url, service, mode="standard", max_attempts=1)
        with pytest.raises(ClientError) as caught:
            call(cl)
        error = caught.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert error["Error"]["Code"] == code
        assert error["Error"]["Message"] == "Rate exceeded"
        assert is_throttling(cl, operation, caught.value)
        assert proxy.calls == [(service, operation, "throttle")] * 2  # retried once, as configured


@pytest.mark.parametrize("service,operation,call,code", [THROTTLED[0], THROTTLED[3]], ids=["query", "json"])
def test_legacy_retry_mode_retries_throttles_too(aws, service, operation, call, code):
    with AwsProxy(aws.endpoint, fault_rate=1.0, faults=("throttle",)) as proxy:
        cl = client(proxy.url, service, mode="legacy", total_max_attempts=2)
        with pytest.raises(ClientError) as caught:
            call(cl)
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 1
        assert proxy.calls == [(service, operation, "throttle")] * 2


@pytest.mark.parametrize("fault", ["throttle", "5xx", "reset"])
def test_faulted_calls_never_reach_the_emulator(aws, fault):
    with AwsProxy(aws.endpoint, fault_rate=1.0, faults=(fault,)) as proxy:
        url = proxy.url
        with pytest.raises((ClientError, HTTPClientError)):
            client(url, "ecs").create_cluster(clusterName="stage")
        with pytest.raises((ClientError, HTTPClientError)):
            client(url, "cloudformation").create_stack(StackName="s", TemplateBody=TEMPLATE)
        with pytest.raises((ClientError, HTTPClientError)):
            create_table(client(url, "dynamodb"))
        assert [c.fault for c in proxy.calls] == [fault] * 3
        assert len(proxy.mutating_calls()) == 3
        # Turned off at runtime: the next call goes through.
        proxy.fault_rate = 0
        assert client(url, "ecs").list_clusters()["clusterArns"] == []
        assert proxy.calls[-1] == ("ecs", "ListClusters", None)
    assert aws.client("ecs").describe_clusters(clusters=["stage"])["clusters"] == []
    assert aws.client("cloudformation").list_stacks()["StackSummaries"] == []
    assert aws.client("dynamodb").list_tables()["TableNames"] == []


def test_5xx_is_aws_shaped_and_transient(proxy):
    proxy.fault_rate, proxy.faults = 1.0, ("5xx",)
    for service, call, code in [("cloudformation", lambda c: c.list_stacks(), "ServiceUnavailable"),
                                ("ecs", lambda c: c.list_clusters(), "ServiceUnavailableException")]:
        with pytest.raises(ClientError) as caught:
            call(client(proxy.url, service))
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert caught.value.response["Error"]["Code"] == code
        context = standard.RetryContext(attempt_number=1, http_response=SimpleNamespace(status_code=503),
                                        parsed_response=caught.value.response)
        assert standard.TransientRetryableChecker().is_retryable(context)


# --- resets ---------------------------------------------------------------------------------------

def test_reset_is_a_connection_error_and_retried(proxy):
    proxy.fault_rate, proxy.faults = 1.0, ("reset",)
    ecs = client(proxy.url, "ecs", mode="standard", total_max_attempts=3)
    with pytest.raises(ConnectionClosedError) as caught:
        ecs.create_cluster(clusterName="stage")
    assert isinstance(caught.value, HTTPClientError)
    context = standard.RetryContext(attempt_number=1, caught_exception=caught.value)
    assert standard.TransientRetryableChecker().is_retryable(context)
    assert proxy.calls == [("ecs", "CreateCluster", "reset")] * 3  # three attempts, all reset

    # Half the requests reset: retries get every call through, each forwarded exactly once.
    proxy.reset_counts()
    proxy.fault_rate = 0.5
    proxy.reseed(3)
    for i in range(8):
        ecs.create_cluster(clusterName=f"c{i}")
    calls = proxy.calls
    assert [c.action for c in calls if c.fault is None] == ["CreateCluster"] * 8
    assert any(c.fault == "reset" for c in calls)
    proxy.fault_rate = 0
    assert len(ecs.list_clusters()["clusterArns"]) == 8


# --- retries absorb random faults -----------------------------------------------------------------

def test_retries_absorb_half_the_calls_failing(aws):
    # The calls are sequential, so the seed fixes the fault sequence. Seed 1 injects all three kinds,
    # never more than two faults in a row: standard mode backs off 1 s x 2^n (with jitter) after a
    # throttle, so long runs of throttles would only make this test slow.
    with AwsProxy(aws.endpoint, fault_rate=0.5, seed=1) as proxy:
        retries = {"mode": "standard", "max_attempts": 10}
        ecs = client(proxy.url, "ecs", **retries)
        cfn = client(proxy.url, "cloudformation", **retries)
        ddb = client(proxy.url, "dynamodb", **retries)
        create_table(ddb)
        expected = ["dynamodb:CreateTable"]
        for i in range(19):
            kind = i % 3
            if kind == 0:
                ecs.create_cluster(clusterName=f"c{i}")
                expected.append("ecs:CreateCluster")
            elif kind == 1:
                ddb.put_item(TableName="t", Item={"k": {"S": str(i)}})
                expected.append("dynamodb:PutItem")
            else:
                assert cfn.list_stacks()["StackSummaries"] == []
                expected.append("cloudformation:ListStacks")
        calls = proxy.calls
        assert [c.key for c in calls if c.fault is None] == expected  # each call got through once
        injected = Counter(c.fault for c in calls if c.fault)
        assert set(injected) == {"throttle", "5xx", "reset"}, calls
    assert len(aws.client("ecs").list_clusters()["clusterArns"]) == 7
    assert aws.client("dynamodb").scan(TableName="t")["Count"] == 6


# --- delays ---------------------------------------------------------------------------------------

def test_latency_and_slow_add_at_least_their_delay(aws):
    with AwsProxy(aws.endpoint, latency=0.2) as proxy:
        sts = client(proxy.url, "sts")
        for _ in range(3):
            start = time.monotonic()
            sts.get_caller_identity()
            assert time.monotonic() - start >= 0.2
        proxy.slow = 0.3  # at runtime
        start = time.monotonic()
        sts.get_caller_identity()
        assert time.monotonic() - start >= 0.5
        proxy.slow, proxy.fault_rate, proxy.faults = 0, 1.0, ("throttle",)
        start = time.monotonic()
        with pytest.raises(ClientError):
            sts.get_caller_identity()
        assert time.monotonic() - start >= 0.2  # faults are delayed as well


def test_lowering_slow_releases_a_held_call(proxy):
    proxy.slow = 300
    result = {}
    ecs = client(proxy.url, "ecs", mode="standard", total_max_attempts=1, read_timeout=600)

    def call():
        result["clusters"] = ecs.list_clusters()["clusterArns"]

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    assert proxy.wait_for("ListClusters", service="ecs", timeout=30) == ("ecs", "ListClusters", None)
    assert "clusters" not in result
    proxy.slow = 0
    worker.join(60)  # liveness only: the held request is let through
    assert result == {"clusters": []}


def test_held_call_whose_client_gives_up_is_not_forwarded(aws):
    with AwsProxy(aws.endpoint, slow=300) as proxy:
        ecs = client(proxy.url, "ecs", mode="standard", total_max_attempts=1, read_timeout=1)
        with pytest.raises(ReadTimeoutError):
            ecs.create_cluster(clusterName="stage")
        deadline = time.monotonic() + 30
        while proxy.calls[0].fault != "abandoned" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.calls == [("ecs", "CreateCluster", "abandoned")]
    assert aws.client("ecs").describe_clusters(clusters=["stage"])["clusters"] == []


# --- CLI ------------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "tests.support.aws_proxy", "--latency", "0.01", "--fault-rate", "0", "--seed", "1"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_prints_its_url_serves_and_reports_on_ctrl_c(aws, signum):
    # Child starts it with SIGINT at its default, even when this test run inherited it ignored.
    with Child([*CLI, "--upstream", aws.endpoint], cwd=ROOT) as proxy:
        url = proxy.wait_for_output("http://")
        assert url.startswith("http://127.0.0.1:"), url
        assert client(url, "sts").get_caller_identity()["Account"] == "123456789012"
        proxy.send(signum)
        code, _, err = proxy.finish(timeout=30)
    assert code == 0, err
    assert "1 calls" in err and "sts:GetCallerIdentity" in err


def test_cli_started_with_sigint_ignored_keeps_it_ignored_and_stops_on_sigterm(aws):
    with Child(as_background_job([*CLI, "--upstream", aws.endpoint]), cwd=ROOT) as proxy:
        url = proxy.wait_for_output("http://")
        assert dispositions(proxy.proc.pid) == {"SIGINT": "ignored", "SIGTERM": "caught"}
        proxy.send(signal.SIGINT)
        assert client(url, "sts").get_caller_identity()["Account"] == "123456789012"  # still serving
        proxy.send(signal.SIGTERM)
        code, _, err = proxy.finish(timeout=30)
    assert code == 0, err
    assert "1 calls" in err
