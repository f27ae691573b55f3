"""A real Redis broker stopped (SIGSTOP) or killed (SIGKILL) in the middle of ``POST jobs/``, after the first of
the run's blocks is published: the request answers a prompt 503 JSON naming the broker, the run is marked failed
(not left "running" with part of its blocks queued), and once a broker is back the run resumes with every block.

tests/test_abuse.py covers a broker that is down or stopped before the request; this is the fault mid-enqueue.
Prints the time to the 503 of each fault (the figure issue 17 asks for).
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from aspects_app import tasks
from aspects_app.models import BatchRun

from .conftest import ChartFactory, basic_auth_header
from .test_cache import RedisServer

JOBS = "/api/aspects/jobs/"
QUEUE = "aspects-broker-faults"
# The longest POST jobs/ may take when the broker fails (the publish timeout is 2 s, one retry).
PROMPT = 8.0
CHARTS = 64  # enough rows for several blocks


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own as the Celery app's broker, restored afterwards."""
    from project.celery import app

    server = RedisServer(tmp_path, policy="noeviction")
    previous = app.conf.broker_url
    app.conf.broker_url = server.url
    try:
        with override_settings(ASPECTS={"CPU_QUEUE": QUEUE, "THROTTLE_ANON": None, "THROTTLE_USER": None}):
            yield server
    finally:
        app.conf.broker_url = previous
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)  # a stopped server would not terminate
        server.stop()


def fault_after_first_block(monkeypatch: pytest.MonkeyPatch, server: RedisServer, fault: signal.Signals) -> None:
    """The broker takes the first block, then gets ``fault`` before the second is published."""
    real = tasks.compute_block.apply_async
    published: list[int] = []

    def apply_async(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        published.append(1)
        if len(published) == 1 and server.process is not None:
            os.kill(server.process.pid, fault)
            if fault == signal.SIGKILL:
                server.process.wait(timeout=10)
        return result

    monkeypatch.setattr(tasks.compute_block, "apply_async", apply_async)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fault", [signal.SIGSTOP, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_broker_failing_mid_enqueue_is_a_prompt_503_and_a_failed_run(
    broker: RedisServer, monkeypatch: pytest.MonkeyPatch, alice: Any, make_chart: ChartFactory, fault: signal.Signals
) -> None:
    for _ in range(CHARTS):
        make_chart(alice)
    client = APIClient()
    client.raise_request_exception = False
    client.credentials(HTTP_AUTHORIZATION=basic_auth_header("alice"))
    with monkeypatch.context() as patch:
        fault_after_first_block(patch, broker, fault)
        began = time.monotonic()
        response = client.post(JOBS, {"modes": ["top-k"], "k": 2}, format="json")
        seconds = time.monotonic() - began
    print(f"broker {fault.name} after the first block: {response.status_code} in {seconds:.2f} s")
    assert response.status_code == 503, response.content[:2000]
    assert seconds < PROMPT, f"the 503 took {seconds:.1f} s"
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert "broker" in body["detail"]
    assert "Retry-After" in response
    run = BatchRun.objects.get()
    assert body["job"] == run.pk
    assert run.status == BatchRun.Status.FAILED
    assert "enqueueing failed" in run.error
    blocks = run.parameters["distributed"]["blocks"]
    assert blocks > 1  # the fault came between blocks

    # A broker is back (a fresh one: the stopped one's queue is lost with it): the run resumes with every block.
    if broker.process is not None:
        broker.process.send_signal(signal.SIGCONT)
    broker.stop()
    broker.start()
    out = io.StringIO()
    call_command("compute_aspects", resume=run.pk, no_wait=True, stdout=out)
    run.refresh_from_db()
    assert run.status == BatchRun.Status.RUNNING
    assert f"{blocks} blocks enqueued on {QUEUE!r}" in out.getvalue()
