"""A fault-injecting, counting HTTP proxy for AWS API calls, for end-to-end tests and benchmarks.

`AwsProxy` listens on 127.0.0.1 (a free port unless told otherwise) and forwards every request to
one upstream, normally the moto server (`http://127.0.0.1:PORT`). Point boto3 at `proxy.url`
(`endpoint_url=` or `AWS_ENDPOINT_URL`) and every AWS call goes through it. Standard library only.

Forwarding
    Any method, path, query, headers and body go upstream through `http.client`, and the answer
    (status, reason, headers, body) comes back unchanged. Only the framing is redone: hop-by-hop
    headers (Connection, Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-*) and
    `Expect` are dropped, the body is buffered and sent with a Content-Length, and chunked bodies
    are de-chunked. Both sides use keep-alive (one upstream connection per client connection).
    Host: with `preserve_host=True` (the default) the Host header goes upstream exactly as the
    client sent it, i.e. the proxy's own `127.0.0.1:PORT`, which is what botocore signed (SigV4
    signs `host`), so a signature-checking upstream would still accept the request. With
    `preserve_host=False` Host is rewritten to the upstream's `host:port` (a signature-checking
    upstream would then reject it; moto checks no signatures and routes on the Authorization
    header's credential scope, so both work against moto).
    If the upstream cannot be reached the client gets a 502 with a plain-text reason.

Faults (`fault_rate`, `faults`, `seed`)
    Before forwarding, with probability `fault_rate` (drawn from `random.Random(seed)` in the
    order requests arrive), one of `faults` is chosen at random and injected INSTEAD of
    forwarding, so the emulator's state does not change:

    "throttle"  HTTP 400 with the error botocore recognises as throttling for the protocol. botocore
                (retries/standard.py `ThrottledRetryableChecker`, and data/_retry.json for the legacy
                mode) classes an error as throttling by its parsed error CODE: `Throttling`,
                `ThrottlingException`, `ProvisionedThroughputExceededException`, ... (standard mode:
                the code alone, whatever the status; a 429 with an unmodeled code counts as well;
                legacy mode: the code AND status 400). So:
                - query protocol (form body `Action=...`: CloudFormation, STS, IAM, ELBv2): text/xml
                  `<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>
                  <Message>Rate exceeded</Message></Error><RequestId>...</RequestId></ErrorResponse>`;
                - JSON protocol (an `X-Amz-Target` header: ECS, ECR, CloudWatch Logs, DynamoDB):
                  `{"__type": "ThrottlingException", "message": "Rate exceeded"}` with the request's
                  own content type (application/x-amz-json-1.1, or 1.0 for DynamoDB). DynamoDB gets
                  `com.amazonaws.dynamodb.v20120810#ThrottlingException`: botocore keeps what follows
                  `#`, and `ThrottlingException` is a throttling code for DynamoDB as for every
                  service (so is `ProvisionedThroughputExceededException`);
                - anything else (REST protocols, best effort): 400 with `x-amzn-ErrorType:
                  ThrottlingException` and an XML `<Error><Code>Throttling</Code>...` body.
    "5xx"       HTTP 503 with an AWS-shaped body: XML `ServiceUnavailable` (query protocol) or JSON
                `ServiceUnavailableException` (JSON protocol). botocore retries any 500/502/503/504.
    "reset"     The request is read, then the connection is closed with SO_LINGER 0, i.e. a TCP RST
                and no answer. botocore raises `ConnectionClosedError` (an `HTTPClientError`), which
                both the standard and the legacy retry modes retry.

    Mind that botocore's `Config(retries={"max_attempts": N})` counts RETRIES (N + 1 attempts in
    all); `total_max_attempts` counts attempts. Standard mode backs off 1 s x 2^attempt (jittered)
    after a throttle but only 50 ms x 2^attempt after a 5xx or a reset, so throttles cost time.

    `faults=()` or `fault_rate=0` turns injection off. A request that is held by a delay (below) and
    whose client goes away meanwhile is not forwarded either; it is recorded as fault "abandoned".

Delays (`latency`, `slow`)
    Every request, injected faults included, is held for `latency + slow` seconds after it was
    read and before it is forwarded (or faulted). `latency` models AWS's own round trip (~0.05 s);
    `slow` is the knob to turn at runtime to slow calls down for interrupt tests. They are simply
    added; both are re-read while a request is held, so lowering `slow` releases held requests
    early, and `stop()` drops them (recorded "abandoned").

Counting
    Every request is recorded on arrival as `Call(service, action, fault)` (a NamedTuple, so it
    compares equal to a plain 3-tuple); `fault` is the injected fault or None:
    - action: from `X-Amz-Target` (`AmazonEC2ContainerServiceV20141113.DescribeServices` ->
      `DescribeServices`), else `Action=` in the form body or the query string, else the
      `/operation/NAME` of a Smithy RPCv2 path, else `"METHOD /path"` (REST protocols, moto-api);
    - service: the SERVICE of the SigV4 credential scope in the Authorization header
      (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`, or X-Amz-Credential in a presigned
      query), else a known `X-Amz-Target` prefix (ecs, ecr, dynamodb, logs), else "unknown".
    `proxy.calls` (a copy, in arrival order), `proxy.counts()` (Counter of "service:Action"),
    `proxy.mutating_calls()` (calls whose action is not read-only: see `is_mutating`),
    `proxy.wait_for(action)` (block until such a call arrived), `proxy.reset_counts()`.
    Faulted and abandoned attempts are counted too: each retry is one more call. All of it is
    thread-safe, and every attribute above may be changed while the proxy runs.

From a test (the moto server fixture is in tests/conftest.py)::

    from tests.support.aws_proxy import AwsProxy

    def test_survives_throttling(aws, studio):
        with AwsProxy(aws.endpoint, latency=0.05, fault_rate=0.2, seed=7) as proxy:
            result = run_inv(studio, "cluster.up", "--name", "stage", env=inv_env(proxy.url))
            assert result.returncode == 0
            proxy.fault_rate = 0          # a clean re-run
            proxy.reset_counts()
            run_inv(studio, "cluster.up", "--name", "stage", env=inv_env(proxy.url))
            print(proxy.counts())         # what a no-op re-run costs, "service:Action" -> n
            assert not [c for c in proxy.mutating_calls() if c.action == "UpdateStack"]

    (`tests` is not a package: `python -m pytest` puts the repository root on sys.path, bare
    `pytest` does not, so a test file may have to `sys.path.insert(0, ROOT)` first.)

From bench/: either `sys.path.insert(0, str(ROOT))` then use `AwsProxy` as above and set
AWS_ENDPOINT_URL=proxy.url for the commands, or run the CLI beside the benchmark:

    python -m tests.support.aws_proxy --upstream http://127.0.0.1:5000 --latency 0.05 \\
        --fault-rate 0.2 [--faults throttle,5xx,reset] [--seed 1] [--slow 0] [--port N] \\
        [--upstream-host]

(run from the repository root). It prints its URL on the first line of stdout, serves until
Ctrl-C (or SIGTERM), then prints the counts to stderr. Started in the background of a script, it
inherits SIGINT ignored and keeps it so: stop it with SIGTERM (a test starts it with
tests/support/signals.py's `spawn`, which gives it SIGINT back).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable, NamedTuple
from urllib.parse import parse_qs, urlsplit

__all__ = ["AwsProxy", "Call", "FAULTS", "fault_response", "identify", "is_mutating", "main"]

log = logging.getLogger(__name__)

FAULTS = ("throttle", "5xx", "reset")
ABANDONED = "abandoned"

# Actions that only read. Everything else counts as mutating.
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "BatchGet", "Query", "Scan")
READ_ONLY_ACTIONS = frozenset({
    ("sts", "GetCallerIdentity"),
    ("logs", "FilterLogEvents"),
    ("cloudformation", "ValidateTemplate"),
    ("cloudformation", "EstimateTemplateCost"),
    ("ecr", "BatchCheckLayerAvailability"),
})
READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")

# X-Amz-Target prefixes -> signing name, for requests without a SigV4 credential scope.
TARGET_SERVICES = {
    "AmazonEC2ContainerServiceV20141113": "ecs",
    "AmazonEC2ContainerRegistry_V20150921": "ecr",
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodb",
    "Logs_20140328": "logs",
}

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_SCOPE = re.compile(r"Credential=[^,\s]*?/([^/,\s]+)/aws4_request")
_RPCV2_PATH = re.compile(r"/service/[^/]+/operation/([^/?]+)")


class Call(NamedTuple):
    """One request seen by the proxy: AWS service (signing name), action, injected fault or None."""

    service: str
    action: str
    fault: str | None = None

    @property
    def key(self) -> str:
        return f"{self.service}:{self.action}"


# --- recognising the AWS call -------------------------------------------------------------------

def identify(method: str, path: str, headers, body: bytes) -> tuple[str, str, str]:
    """(service, action, protocol) of one request; protocol is "json", "query", "rpcv2" or "rest".

    `headers` is anything with a case-insensitive `.get` (http.client/email Message), or a dict.
    """
    get = _header_getter(headers)
    split = urlsplit(path)
    query = parse_qs(split.query)
    service = ""
    match = _SCOPE.search(get("Authorization") or "")
    if match:
        service = match.group(1)
    elif "X-Amz-Credential" in query:
        parts = query["X-Amz-Credential"][0].split("/")
        if len(parts) >= 3 and parts[-1] == "aws4_request":
            service = parts[-2]

    target = get("X-Amz-Target")
    if target:
        prefix, _, action = target.rpartition(".")
        return service or TARGET_SERVICES.get(prefix, prefix.lower() or "unknown"), action, "json"

    action = ""
    content_type = (get("Content-Type") or "").lower()
    if body and ("x-www-form-urlencoded" in content_type or body.startswith(b"Action=")):
        form = parse_qs(body.decode("utf-8", "replace"))
        action = (form.get("Action") or [""])[0]
    if not action:
        action = (query.get("Action") or [""])[0]
    if action:
        return service or "unknown", action, "query"

    rpc = _RPCV2_PATH.search(split.path)
    if rpc and get("Smithy-Protocol"):
        return service or "unknown", rpc.group(1), "rpcv2"
    return service or "unknown", f"{method.upper()} {split.path or '/'}", "rest"


def is_mutating(call: Iterable) -> bool:
    """Whether a call may change state: its action does not start with Describe/Get/List/BatchGet/
    Query/Scan and is not one of READ_ONLY_ACTIONS (sts GetCallerIdentity, logs FilterLogEvents,
    cloudformation ValidateTemplate/EstimateTemplateCost, ecr BatchCheckLayerAvailability). For a
    REST-style "METHOD /path" action, any method but GET/HEAD/OPTIONS."""
    service, action = tuple(call)[:2]
    if " " in action:
        return action.split(" ", 1)[0] not in READ_ONLY_METHODS
    if (service, action) in READ_ONLY_ACTIONS:
        return False
    return not action.startswith(READ_ONLY_PREFIXES)


def _header_getter(headers):
    if hasattr(headers, "get") and not isinstance(headers, dict):
        return headers.get
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    return lambda name, default=None: lowered.get(name.lower(), default)


# --- fault bodies ---------------------------------------------------------------------------------

def _json_code(target: str, code: str) -> str:
    if target.startswith("DynamoDB"):
        return f"com.amazonaws.dynamodb.v20120810#{code}"
    return code


def fault_response(fault: str, protocol: str, headers) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of an injected "throttle" or "5xx" answer for that protocol."""
    get = _header_getter(headers)
    request_id = str(uuid.uuid4())
    if fault == "throttle":
        status, xml_code, json_code, kind, message = 400, "Throttling", "ThrottlingException", "Sender", \
            "Rate exceeded"
    elif fault == "5xx":
        status, xml_code, json_code, kind, message = 503, "ServiceUnavailable", "ServiceUnavailableException", \
            "Receiver", "Service is unavailable. Please try again later."
    else:
        raise ValueError(f"no response for fault {fault!r}")
    out = [("x-amzn-RequestId", request_id)]
    if protocol == "json":
        content_type = get("Content-Type") or ""
        if not content_type.startswith("application/x-amz-json"):
            content_type = "application/x-amz-json-1.1"
        body = json.dumps({"__type": _json_code(get("X-Amz-Target") or "", json_code), "message": message})
        out += [("Content-Type", content_type), ("x-amzn-ErrorType", json_code)]
    elif protocol == "query":
        body = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{xml_code}</Code><Message>{message}"
                f"</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        out += [("Content-Type", "text/xml")]
    else:
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{xml_code}</Code>"
                f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>")
        out += [("Content-Type", "application/xml"), ("x-amzn-ErrorType", json_code)]
    return status, out, body.encode()


# --- the server -----------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, proxy: "AwsProxy"):
        self.proxy = proxy
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address):  # a client going away is not news
        log.debug("aws_proxy: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self):
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)
            self._close_upstream()

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        log.debug("aws_proxy: " + format, *args)

    def __getattr__(self, name):
        # BaseHTTPRequestHandler dispatches on do_<METHOD>: answer every method.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    # -- one request --

    def _serve(self):
        proxy = self.server.proxy
        body = self._read_body()
        service, action, protocol = identify(self.command, self.path, self.headers, body)
        fault, index = proxy._arrive(service, action)
        if not self._hold():
            proxy._abandon(index)
            self._reset()
            return
        if fault == "reset":
            self._reset()
        elif fault is not None:
            status, headers, payload = fault_response(fault, protocol, self.headers)
            self._answer(status, None, headers, payload)
        else:
            self._forward(body)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _hold(self) -> bool:
        """Wait latency + slow (re-read as it goes); False if the client left or the proxy stops."""
        proxy = self.server.proxy
        start = time.monotonic()
        while True:
            remaining = start + proxy.latency + proxy.slow - time.monotonic()
            if proxy._stopping.is_set():
                return False
            if remaining <= 0:
                return True
            if _readable(self.connection, min(remaining, 0.05)):
                if _peer_closed(self.connection):
                    return False
                time.sleep(min(remaining, 0.05))  # pipelined bytes: just wait

    def _reset(self):
        """Close the client connection with a TCP RST and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()  # makefile() holds a reference: the socket only closes once it is gone
        except OSError:
            pass
        self.connection.close()

    def _answer(self, status: int, reason: str | None, headers, payload: bytes, *, head_length=None):
        try:
            self.send_response_only(status, reason)
            names = set()
            for name, value in headers:
                names.add(name.lower())
                self.send_header(name, value)
            if "date" not in names:
                self.send_header("Date", self.date_time_string())
            if head_length is not None:
                self.send_header("Content-Length", head_length)
            elif not (100 <= status < 200 or status in (204, 304)):
                self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:  # the client went away
            self.close_connection = True

    def _forward(self, body: bytes):
        proxy = self.server.proxy
        path = self.path
        if "://" in path.split("?", 1)[0]:  # absolute-form request target
            split = urlsplit(path)
            path = split.path + (f"?{split.query}" if split.query else "")
        path = proxy._base_path + (path if path.startswith("/") else f"/{path}")
        dropped = set(HOP_BY_HOP) | {"expect", "content-length"}
        for value in self.headers.get_all("Connection") or []:
            dropped.update(token.strip().lower() for token in value.split(","))
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in dropped]
        has_host = any(k.lower() == "host" for k, _ in headers)
        if not proxy.preserve_host or not has_host:
            headers = [(k, v) for k, v in headers if k.lower() != "host"]
            headers.insert(0, ("Host", proxy._upstream_netloc))
        if body or "Content-Length" in self.headers or "Transfer-Encoding" in self.headers:
            headers.append(("Content-Length", str(len(body))))

        for attempt in (1, 2):
            reused = self._upstream is not None
            conn = self._upstream or proxy._connect()
            self._upstream = conn
            try:
                conn.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body or None)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ConnectionAbortedError) as exc:
                self._close_upstream()
                if reused and attempt == 1:
                    continue  # a stale keep-alive connection: once more on a fresh one
                return self._bad_gateway(exc)
            except (OSError, http.client.HTTPException) as exc:
                self._close_upstream()
                return self._bad_gateway(exc)
        if response.will_close:
            self._close_upstream()
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
        head_length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self._answer(response.status, response.reason, out, payload, head_length=head_length)

    def _bad_gateway(self, exc: BaseException):
        message = f"aws_proxy: upstream {self.server.proxy.upstream} failed: {exc!r}".encode()
        self._answer(502, None, [("Content-Type", "text/plain")], message)

    def _close_upstream(self):
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None


def _readable(sock: socket.socket, timeout: float) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([sock], [], [], timeout)[0])


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# --- the public object ----------------------------------------------------------------------------

class AwsProxy:
    """See the module docstring. Attributes may be changed while it runs."""

    def __init__(self, upstream: str, *, latency: float = 0.0, fault_rate: float = 0.0,
                 faults: Iterable[str] = FAULTS, seed: int | None = None, slow: float = 0.0,
                 port: int = 0, preserve_host: bool = True, upstream_timeout: float = 300.0):
        split = urlsplit(upstream)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"upstream must be an http(s) URL, not {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_scheme = split.scheme
        self._upstream_host = split.hostname
        self._upstream_port = split.port or (443 if split.scheme == "https" else 80)
        self._upstream_netloc = split.netloc
        self._base_path = split.path.rstrip("/")
        self.upstream_timeout = upstream_timeout
        self.latency = latency
        self.slow = slow
        self.fault_rate = fault_rate
        self.faults = faults
        self.preserve_host = preserve_host
        self.port = port
        self._rng = random.Random(seed)
        self._lock = threading.Condition()
        self._calls: list[Call] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- settings --

    @property
    def fault_rate(self) -> float:
        return self._fault_rate

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fault_rate must be within [0, 1], not {value}")
        self._fault_rate = value

    @property
    def faults(self) -> tuple[str, ...]:
        return self._faults

    @faults.setter
    def faults(self, value: Iterable[str]) -> None:
        value = (value,) if isinstance(value, str) else tuple(value)
        unknown = [f for f in value if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}: choose from {FAULTS}")
        self._faults = value

    def reseed(self, seed: int | None) -> None:
        """Restart the fault sequence, as a new `random.Random(seed)`."""
        with self._lock:
            self._rng = random.Random(seed)

    # -- life cycle --

    def start(self) -> "AwsProxy":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self.port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"aws-proxy:{self._server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        # Wake the handler threads idling on keep-alive connections, so nothing is served any more.
        with server.sockets_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "AwsProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("AwsProxy is not running: call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- counting --

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def counts(self) -> Counter:
        """Counter of "service:Action" over every recorded call (faulted attempts included)."""
        return Counter(call.key for call in self.calls)

    def mutating_calls(self) -> list[Call]:
        """The recorded calls that may change state (see `is_mutating`), faulted ones included."""
        return [call for call in self.calls if is_mutating(call)]

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()

    def wait_for(self, action: str, *, service: str | None = None, timeout: float = 30.0) -> Call:
        """Block until a call of `action` (and `service`, if given) has arrived; return it.
        Raises TimeoutError. Useful with `slow` to interrupt a client in the middle of a call."""
        def match():
            return next((c for c in self._calls
                         if c.action == action and (service is None or c.service == service)), None)
        with self._lock:
            if not self._lock.wait_for(match, timeout):
                raise TimeoutError(f"no {service or '*'}:{action} call within {timeout} s")
            return match()

    # -- used by the handler --

    def _arrive(self, service: str, action: str) -> tuple[str | None, int]:
        with self._lock:
            fault = None
            if self._fault_rate > 0 and self._faults and self._rng.random() < self._fault_rate:
                fault = self._rng.choice(self._faults)
            self._calls.append(Call(service, action, fault))
            self._lock.notify_all()
            return fault, len(self._calls) - 1

    def _abandon(self, index: int) -> None:
        with self._lock:
            if index < len(self._calls) and self._calls[index].fault is None:
                self._calls[index] = self._calls[index]._replace(fault=ABANDONED)

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._upstream_scheme == "https" else http.client.HTTPConnection
        return cls(self._upstream_host, self._upstream_port, timeout=self.upstream_timeout)


# --- CLI ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.aws_proxy",
                                     description="Fault-injecting, counting proxy for AWS API calls.")
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000 (the moto server)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    parser.add_argument("--slow", type=float, default=0.0, help="more seconds added to every call")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault, 0..1")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma list of {','.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--upstream-host", action="store_true",
                        help="rewrite Host to the upstream's (default: forward it as received)")
    args = parser.parse_args(argv)
    try:
        proxy = AwsProxy(args.upstream, latency=args.latency, slow=args.slow, fault_rate=args.fault_rate,
                         faults=[f for f in args.faults.split(",") if f], seed=args.seed, port=args.port,
                         preserve_host=not args.upstream_host)
    except ValueError as exc:
        parser.error(str(exc))
    done = threading.Event()
    # Set before the URL is printed: whoever read it may signal at once. SIGINT that is ignored
    # at start (a background job of a script) stays ignored, as in the tool.
    stopping = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        stopping.append(signal.SIGINT)
    for signum in stopping:
        signal.signal(signum, lambda *_: done.set())
    with proxy:
        print(proxy.url, flush=True)
        while not done.wait(0.5):
            pass
    calls = proxy.calls
    faults = Counter(c.fault for c in calls if c.fault)
    print(f"{len(calls)} calls, faults: {dict(faults) or 'none'}", file=sys.stderr)
    for key, count in sorted(proxy.counts().items()):
        print(f"{count:6d}  {key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
