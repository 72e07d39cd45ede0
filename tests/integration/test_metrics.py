"""Prometheus metrics on a real server. After known traffic the exposition has exact
counts (RPCs by code, stream messages, pool items, cache lookups, workers, refusals by
reason). A killed worker and a full queue show up in the worker counters and in
`qulab_degraded`, which clears once the queue drains. A real Prometheus scrapes the
endpoint and its query agrees. The endpoint holds no secret, and it can be turned off.
docs/metrics.md lists every metric served, with its type, and its PromQL examples are
valid queries.

Calls go through plain stubs rather than `qulab.client.Client`, so that no retry changes
the counts. Workers are frozen with SIGSTOP to hold calls in the pool (see
test_worker_faults.py); those servers log at DEBUG so that a test waits for the pool's
"queued" and "task sent" lines instead of sleeping."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from qulab.v1 import molecule_pb2, molecule_pb2_grpc
from tests.conftest import ROOT, RunningServer
from tests.integration import _prometheus
from tests.integration._credentials import HS256_SECRET, auth_settings, token
from tests.integration._metrics import metrics_port, scrape, settled
from tests.integration._status import failure_of
from tests.integration._workers import worker_pids

DOCS = ROOT / "docs" / "metrics.md"
SERVICE = "qulab.v1.MoleculeService"
UNARY = {"grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "ParseMolecule"}
STREAM = {"grpc_type": "bidi_stream", "grpc_service": SERVICE, "grpc_method": "ParseMolecules"}
PARSE = "molecule.parse"
VALID = ["C", "CC", "CCO", "c1ccccc1", "CC(=O)O", "C1CCCCC1"]
INVALID_IN_WORKER = ["C1CC", "CC(C"]  # pass the request rules; RDKit refuses them
INVALID_BY_RULES = [""]  # refused by the request's rules, before any work
STREAMED = ["N", "CN", "CCN"]
ALICE_KEY = "qk_alice_metrics_0123456789"
KEYS = {ALICE_KEY: ("alice", ["user"])}


def code_label(code: grpc.StatusCode) -> str:
    """How go-grpc-prometheus (Go's codes package) spells a code in `grpc_code`."""
    go_names = {grpc.StatusCode.OK: "OK", grpc.StatusCode.CANCELLED: "Canceled"}
    return go_names.get(code) or "".join(part.title() for part in code.name.split("_"))


def _request(smiles: str, id: str = "") -> molecule_pb2.ParseMoleculeRequest:
    return molecule_pb2.ParseMoleculeRequest(smiles=smiles, id=id or smiles)


@contextlib.contextmanager
def _stub(server: RunningServer) -> Iterator[molecule_pb2_grpc.MoleculeServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield molecule_pb2_grpc.MoleculeServiceStub(channel)


def _refused(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.StatusCode:
    """The code of `call(*args, **kwargs)`, which must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return failure_of(caught.value).code


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    """The worker stopped (SIGSTOP) inside the block, and continued whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_rpc_and_work_series_count_the_traffic(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(cache_mb="0", queue_size="100")
    with _stub(server) as stub:
        for smiles in VALID:
            assert stub.ParseMolecule(_request(smiles), timeout=30).molecule.num_atoms > 0
        for smiles in INVALID_IN_WORKER + INVALID_BY_RULES:
            code = _refused(stub.ParseMolecule, _request(smiles), timeout=30)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        answers = list(stub.ParseMolecules(iter(map(_request, STREAMED)), timeout=30))
        assert [a.id for a in answers] == STREAMED
    page = settled(server)
    invalid = len(INVALID_IN_WORKER) + len(INVALID_BY_RULES)
    calls = len(VALID) + invalid

    ok, invalid_argument = (
        code_label(c) for c in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
    )
    assert page.value("grpc_server_started_total", **UNARY) == calls
    assert page.value("grpc_server_handled_total", **UNARY, grpc_code=ok) == len(VALID)
    assert page.value("grpc_server_handled_total", **UNARY, grpc_code=invalid_argument) == invalid
    assert len(page.series("grpc_server_handled_total")) == 3  # 2 codes + the stream's OK
    assert page.value("grpc_server_handling_seconds_count", **UNARY) == calls
    assert page.value("grpc_server_handling_seconds_bucket", **UNARY, le="+Inf") == calls
    assert page.value("grpc_server_handling_seconds_sum", **UNARY) > 0

    assert page.value("grpc_server_started_total", **STREAM) == 1
    assert page.value("grpc_server_handled_total", **STREAM, grpc_code=ok) == 1
    assert page.value("grpc_server_handling_seconds_count", **STREAM) == 1
    assert page.value("grpc_server_msg_received_total", **STREAM) == len(STREAMED)
    assert page.value("grpc_server_msg_sent_total", **STREAM) == len(STREAMED)

    # Every item reached a worker (no cache): the unary calls past the rules, and each
    # streamed message.
    computed = len(VALID) + len(INVALID_IN_WORKER) + len(STREAMED)
    op = {"op": PARSE}
    assert page.value("qulab_items_total", **op, outcome="ok") == len(VALID) + len(STREAMED)
    assert page.value("qulab_items_total", **op, outcome="error") == len(INVALID_IN_WORKER)
    assert page.value("qulab_items_total", **op, outcome="cached") == 0
    assert page.value("qulab_cache_lookups_total", **op, result="miss") == computed
    assert page.value("qulab_cache_lookups_total", **op, result="hit") == 0
    assert page.value("qulab_compute_seconds_count", **op) == computed
    assert page.value("qulab_queue_wait_seconds_count", **op) == computed
    assert page.value("qulab_compute_seconds_sum", **op) > 0

    assert page.value("qulab_workers") == page.value("qulab_workers_configured") == 2
    assert page.value("qulab_queue_capacity") == 100
    assert page.value("qulab_queue_depth") == 0
    assert page.value("qulab_rpcs_in_flight") == 0
    for counter in (
        "qulab_worker_restarts_total",
        "qulab_worker_crashes_total",
        "qulab_worker_deadline_kills_total",
        "qulab_expired_in_queue_total",
    ):
        assert page.value(counter) == 0, counter
    assert page.series("qulab_rejected_total") == []  # INVALID_ARGUMENT is no refusal
    assert page.families["qulab_degraded"].type == "gauge"
    assert page.series("qulab_degraded") == []
    (build,) = page.series("qulab_build_info")
    assert page.value("qulab_build_info", **build) == 1
    assert build["version"] == server.wait_for_log(message="listening")["server_version"]
    assert build["rdkit"] == importlib.metadata.version("rdkit")


def test_cache_hits_are_counted_instead_of_work(server: RunningServer) -> None:
    # The shared server: its counters are compared before and after. The id makes the
    # request (and so its cache key) new to it.
    repeats = 4
    request = _request("CCCCCCO", id=f"cache-{uuid.uuid4().hex}")
    op = {"op": PARSE}
    names = [
        ("qulab_cache_lookups_total", {"result": "hit"}),
        ("qulab_cache_lookups_total", {"result": "miss"}),
        ("qulab_items_total", {"outcome": "cached"}),
        ("qulab_items_total", {"outcome": "ok"}),
        ("qulab_compute_seconds_count", {}),
    ]

    def counts() -> list[float]:
        page = settled(server)
        values = []
        for name, labels in names:
            present = {**op, **labels} in page.series(name)
            values.append(page.value(name, **op, **labels) if present else 0.0)
        return values

    before = counts()
    with _stub(server) as stub:
        answers = [stub.ParseMolecule(request, timeout=30) for _ in range(repeats)]
    assert [a.provenance.cache_hit for a in answers] == [False] + [True] * (repeats - 1)
    after = counts()
    delta = [a - b for a, b in zip(after, before, strict=True)]
    assert delta == [repeats - 1, 1, repeats - 1, 1, 1]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = auth_settings(tmp_path_factory.mktemp("metrics-auth"), KEYS)
    running = RunningServer({f"QULAB_{k.upper()}": v for k, v in settings.items()})
    yield running
    assert running.stop() == 0


def test_refusals_are_counted_by_code_and_reason(secured: RunningServer) -> None:
    def refusals() -> dict[tuple[str, str], float]:
        page = settled(secured)
        return {
            (labels["grpc_code"], labels["reason"]): page.value("qulab_rejected_total", **labels)
            for labels in page.series("qulab_rejected_total")
        }

    before = refusals()
    with _stub(secured) as stub:
        code = _refused(stub.ParseMolecule, _request("CCO"), timeout=30)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        for _ in range(2):
            wrong = (("x-api-key", "qk_not_a_key_at_all"),)
            code = _refused(stub.ParseMolecule, _request("CCO"), metadata=wrong, timeout=30)
            assert code == grpc.StatusCode.UNAUTHENTICATED
        stub.ParseMolecule(_request("CCO"), metadata=(("x-api-key", ALICE_KEY),), timeout=30)
    after = refusals()
    unauthenticated = code_label(grpc.StatusCode.UNAUTHENTICATED)
    missing = (unauthenticated, "CREDENTIALS_MISSING")
    invalid = (unauthenticated, "API_KEY_INVALID")
    assert after[missing] - before.get(missing, 0) == 1
    assert after[invalid] - before.get(invalid, 0) == 2
    assert set(after) - set(before) <= {missing, invalid}  # the accepted call is no refusal


def test_the_endpoint_serves_no_secret(secured: RunningServer) -> None:
    bearer = token(subject="carol")
    forged = token(secret="another-secret-that-is-also-long-enough")
    wrong_key = "qk_wrong_key_for_metrics_test"
    with _stub(secured) as stub:
        stub.ParseMolecule(_request("CCO"), metadata=(("x-api-key", ALICE_KEY),), timeout=30)
        stub.ParseMolecule(
            _request("CCO"), metadata=(("authorization", f"Bearer {bearer}"),), timeout=30
        )
        for metadata in (
            (("x-api-key", wrong_key),),
            (("authorization", f"Bearer {forged}"),),
        ):
            code = _refused(stub.ParseMolecule, _request("CCO"), metadata=metadata, timeout=30)
            assert code == grpc.StatusCode.UNAUTHENTICATED
    page = settled(secured)
    unauthenticated = code_label(grpc.StatusCode.UNAUTHENTICATED)
    assert page.value("qulab_rejected_total", grpc_code=unauthenticated, reason="TOKEN_INVALID")
    # What the keys file holds (each key's SHA-256) is no more to be shown than the keys.
    key_hashes = {hashlib.sha256(key.encode()).hexdigest() for key in (*KEYS, wrong_key)}
    secrets = {ALICE_KEY, wrong_key, bearer, forged, HS256_SECRET, *key_hashes}
    # The parts of a JWT, too: its signature alone is a secret's output.
    secrets.update(part for jwt in (bearer, forged) for part in jwt.split(".") if part)
    for secret in secrets:
        assert secret not in page.text
    for principal in ("alice", "carol"):
        assert principal not in page.text  # nor who called


def test_a_killed_worker_is_a_restart_and_a_crash(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(workers="1", cache_mb="0", log_level="DEBUG")
    (worker,) = worker_pids(server, 1)
    page = settled(server)
    assert page.value("qulab_worker_restarts_total") == 0
    assert page.value("qulab_worker_crashes_total") == 0
    with _stub(server) as stub, ThreadPoolExecutor(1) as background:
        with _frozen(worker):
            held = background.submit(stub.ParseMolecule, _request("CCCl"), timeout=30)
            server.wait_for_log(message="task sent", worker_pid=worker)
            os.kill(worker, signal.SIGKILL)
        assert _refused(held.result, 30) == grpc.StatusCode.INTERNAL
        server.wait_for_log(message="worker crashed", worker_pid=worker)
        (replacement,) = worker_pids(server, 1)
        assert replacement != worker
        assert stub.ParseMolecule(_request("CCBr"), timeout=30).molecule.num_atoms == 3
    page = settled(server)
    assert page.value("qulab_worker_restarts_total") == 1
    assert page.value("qulab_worker_crashes_total") == 1
    assert page.value("qulab_worker_deadline_kills_total") == 0
    assert page.value("qulab_workers") == 1
    internal, ok = (code_label(c) for c in (grpc.StatusCode.INTERNAL, grpc.StatusCode.OK))
    assert page.value("grpc_server_handled_total", **UNARY, grpc_code=internal) == 1
    assert page.value("grpc_server_handled_total", **UNARY, grpc_code=ok) == 1
    assert page.series("qulab_degraded") == []  # one restart is not "restarting"


def test_a_filling_queue_is_degraded_until_it_drains(
    start_server: Callable[..., RunningServer],
) -> None:
    # One call sits in the frozen worker and the rest wait: 4 of 5 places is the 80% mark,
    # 5 fills the queue, and the call after that is turned away.
    capacity = 5
    server = start_server(
        workers="1",
        queue_size=str(capacity),
        batch_max_items="1",
        cache_mb="0",
        log_level="DEBUG",
    )
    (worker,) = worker_pids(server, 1)
    held: list[Future[molecule_pb2.ParseMoleculeResponse]] = []
    with _stub(server) as stub, ThreadPoolExecutor(capacity + 1) as background:
        with _frozen(worker):
            for n in range(1, capacity + 1):
                held.append(
                    background.submit(stub.ParseMolecule, _request("C" * n + "O"), timeout=60)
                )
            server.wait_for_log(message="queued", count=capacity)
            near = scrape(server)
            assert near.value("qulab_queue_depth") == capacity - 1
            assert near.value("qulab_degraded", reason="QUEUE_NEAR_CAPACITY") == 1
            assert near.series("qulab_degraded") == [{"reason": "QUEUE_NEAR_CAPACITY"}]

            held.append(background.submit(stub.ParseMolecule, _request("CCCCCCCO"), timeout=60))
            server.wait_for_log(message="queued", count=capacity + 1)
            code = _refused(stub.ParseMolecule, _request("CCCCCCCCO"), timeout=30)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            full = settled(server, in_flight=capacity + 1)
            assert full.value("qulab_queue_depth") == capacity
            assert full.value("qulab_queue_capacity") == capacity
            assert full.value("qulab_degraded", reason="QUEUE_NEAR_CAPACITY") == 1
            refused = code_label(grpc.StatusCode.RESOURCE_EXHAUSTED)
            reason = "RESOURCE_EXHAUSTED"  # the queue's refusal: ErrorInfo's default reason
            assert full.value("qulab_rejected_total", grpc_code=refused, reason=reason) == 1
        for call in held:
            assert call.result(60).molecule.num_atoms > 0
    drained = settled(server)
    assert drained.value("qulab_queue_depth") == 0
    assert drained.value("qulab_rpcs_in_flight") == 0
    assert drained.series("qulab_degraded") == []
    ok = code_label(grpc.StatusCode.OK)
    assert drained.value("grpc_server_handled_total", **UNARY, grpc_code=ok) == capacity + 1


def test_metrics_can_be_turned_off(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(metrics="false")
    assert server.wait_for_log(message="listening")["metrics_port"] is None
    with _stub(server) as stub:
        assert stub.ParseMolecule(_request("CCO"), timeout=30).molecule.num_atoms == 3


def _documented() -> dict[str, str]:
    """Metric name -> type, from the table in docs/metrics.md."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (counter|gauge|histogram) \|", DOCS.read_text(), re.M)
    assert rows, f"no metric table in {DOCS}"
    return dict(rows)


def _promql_examples() -> list[str]:
    examples = re.findall(r"```promql\n(.*?)\n```", DOCS.read_text(), re.S)
    assert examples, f"no PromQL example in {DOCS}"
    return examples


def test_the_docs_list_every_metric_with_its_type(server: RunningServer) -> None:
    page = settled(server)
    served = {
        (f"{name}_total" if family.type == "counter" else name): family.type
        for name, family in page.families.items()
    }
    tracing_only = {"qulab_spans_total"}  # this server traces nothing
    assert served == {k: v for k, v in _documented().items() if k not in tracing_only}


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """Fetched (or found) before any server starts, so a skip costs nothing."""
    return _prometheus.binary()


@pytest.mark.usefixtures("prometheus_binary")
def test_prometheus_scrapes_the_endpoint(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = start_server(cache_mb="0")
    with _prometheus.scraping(f"127.0.0.1:{metrics_port(server)}", tmp_path) as prometheus:
        prometheus.wait_for_value('up{job="qulab"}', 1)
        series = 'grpc_server_handled_total{grpc_method="ParseMolecule"}'
        handled = f"sum({series})"
        # Two rounds, each seen by a scrape, so that the counters grow between scrapes and
        # their rates are not zero.
        with _stub(server) as stub:
            for smiles in VALID:
                stub.ParseMolecule(_request(smiles), timeout=30)
            prometheus.wait_for_value(handled, len(VALID))
            for smiles in VALID:
                stub.ParseMolecule(_request(smiles), timeout=30)
            for smiles in INVALID_IN_WORKER:
                _refused(stub.ParseMolecule, _request(smiles), timeout=30)
        prometheus.wait_for_value(handled, 2 * len(VALID) + len(INVALID_IN_WORKER))
        invalid = code_label(grpc.StatusCode.INVALID_ARGUMENT)
        prometheus.wait_for_value(
            f'sum(grpc_server_handled_total{{grpc_method="ParseMolecule",grpc_code="{invalid}"}})',
            len(INVALID_IN_WORKER),
        )
        prometheus.wait_for_value(f"sum(rate({series}[1m])) > bool 0", 1)
        prometheus.wait_for_value("qulab_workers", 2)
        assert prometheus.query("qulab_degraded") == []
        (build,) = prometheus.query("qulab_build_info")
        assert build["metric"]["rdkit"] == importlib.metadata.version("rdkit")
        for example in _promql_examples():
            prometheus.query(example)  # each is a valid query (it raises otherwise)


def test_codes_are_spelled_as_go_grpc_prometheus_spells_them(server: RunningServer) -> None:
    with _stub(server) as stub:
        _refused(stub.ParseMolecule, _request("C1CC"), timeout=30)
    codes = {
        labels["grpc_code"]
        for labels in scrape(server).series("grpc_server_handled_total")
        if labels["grpc_method"] == "ParseMolecule"
    }
    assert "InvalidArgument" in codes, codes
