"""The REST upstream's retries: the token budget and backoff of ``RetryPolicy`` on their own,
then ``RestUpstream`` against a TF Serving REST port played in process by aiohttp (port 0),
with millisecond backoffs."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

import grpc
import numpy as np
import pytest
from aiohttp import web

from gateway._proto.tfserving import types_pb2
from gateway.errors import UpstreamError
from gateway.tfserving.rest import RestUpstream, RetryPolicy
from gateway.tfserving.signatures import ModelRef, VersionState, VersionStatus

COLORS = ModelRef("colors")
STATUS = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}
SCORES = [[0.5, 0.25, 0.125]]


@pytest.fixture
def bounds(monkeypatch) -> list[tuple[float, float]]:
    """Every ``random.uniform(a, b)`` the backoff asks for; each returns ``a`` (no waiting)."""
    asked: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        asked.append((a, b))
        return a

    monkeypatch.setattr(random, "uniform", uniform)
    return asked


# --- the budget -------------------------------------------------------------------------------


def test_a_new_budget_holds_max_tokens() -> None:
    assert RetryPolicy().tokens == 10.0


def test_a_failure_costs_one_token() -> None:
    policy = RetryPolicy()
    policy.failed()
    assert policy.tokens == 9.0


def test_retries_are_allowed_only_while_more_than_half_the_tokens_remain() -> None:
    policy = RetryPolicy()
    assert [policy.failed() for _ in range(6)] == [True, True, True, True, False, False]


def test_a_failure_that_leaves_exactly_half_allows_no_retry() -> None:
    policy = RetryPolicy()
    policy.tokens = 6.0
    assert (policy.failed(), policy.tokens) == (False, 5.0)


def test_a_success_earns_token_ratio() -> None:
    policy = RetryPolicy()
    policy.tokens = 5.0
    policy.succeeded()
    assert policy.tokens == 5.1


def test_ten_successes_earn_back_one_token() -> None:
    policy = RetryPolicy()
    policy.tokens = 5.0
    for _ in range(10):
        policy.succeeded()
    assert policy.tokens == pytest.approx(6.0)  # ten additions of 0.1, not exact in binary


def test_ten_successes_after_the_budget_is_spent_earn_back_no_retry() -> None:
    policy = RetryPolicy()
    for _ in range(5):
        policy.failed()
    for _ in range(10):  # 5 → 6 tokens: a failure leaves 5, not above half
        policy.succeeded()
    assert policy.failed() is False


def test_successes_earn_back_a_retry_after_the_budget_is_spent() -> None:
    policy = RetryPolicy()
    for _ in range(5):
        policy.failed()
    for _ in range(11):  # 5 → 6.1 tokens: a failure leaves 5.1, above half
        policy.succeeded()
    assert policy.failed() is True


def test_tokens_never_exceed_max_tokens() -> None:
    policy = RetryPolicy()
    policy.succeeded()
    assert policy.tokens == 10.0


def test_tokens_never_go_below_zero() -> None:
    policy = RetryPolicy()
    for _ in range(12):
        policy.failed()
    assert policy.tokens == 0.0


# --- the backoff ------------------------------------------------------------------------------


def test_backoff_bound_doubles_from_the_initial_backoff_up_to_the_max(bounds) -> None:
    policy = RetryPolicy()
    for attempt in range(7):
        policy.backoff(attempt)
    assert bounds == [(0, 0.02), (0, 0.04), (0, 0.08), (0, 0.16), (0, 0.32), (0, 0.5), (0, 0.5)]


def test_backoff_is_drawn_within_its_bounds() -> None:
    policy = RetryPolicy()
    pauses = [policy.backoff(2) for _ in range(200)]
    assert min(pauses) >= 0.0 and max(pauses) <= 0.08


# --- RestUpstream against a TF Serving REST port ----------------------------------------------


class ScriptedTfServing:
    """A TF Serving REST port on 127.0.0.1:0 that answers each request with the next HTTP
    status of its script (an ``{"error": …}`` body), and with 200 once the script runs out."""

    def __init__(self, *statuses: int) -> None:
        self.script = deque(statuses)
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedTfServing:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        status = self.script.popleft() if self.script else 200
        if status != 200:
            return web.json_response({"error": f"scripted {status}"}, status=status)
        if request.path.endswith(":predict"):
            return web.json_response({"outputs": {"scores": SCORES}})
        return web.json_response(STATUS)


def fast_policy() -> RetryPolicy:
    return RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.001)


def run(statuses: tuple[int, ...], test: Callable[[RestUpstream], Awaitable[None]]) -> list[str]:
    """Run ``test`` against a scripted TF Serving; return the requests it received."""

    async def body() -> list[str]:
        async with ScriptedTfServing(*statuses) as server:
            upstream = RestUpstream(server.url, retry=fast_policy())
            try:
                await asyncio.wait_for(test(upstream), timeout=5)
            finally:
                await upstream.close()
            return server.requests

    return asyncio.run(body())


async def predict(upstream: RestUpstream) -> np.ndarray:
    body = upstream.prepare(
        COLORS, {"images": np.zeros((1, 2, 2, 3), np.float32)}, (), {"images": types_pb2.DT_FLOAT}
    )
    prediction = await upstream.send(body, COLORS, None)
    return prediction.outputs["scores"]


def test_unavailable_predicts_are_retried_until_one_succeeds() -> None:
    async def test(upstream: RestUpstream) -> None:
        np.testing.assert_array_equal(await predict(upstream), np.array(SCORES))

    assert run((503, 503), test) == ["POST /v1/models/colors:predict"] * 3


def test_retries_stop_at_the_attempt_limit() -> None:
    async def test(upstream: RestUpstream) -> None:
        with pytest.raises(UpstreamError) as caught:
            await predict(upstream)
        assert (caught.value.code, caught.value.details) == (
            grpc.StatusCode.UNAVAILABLE,
            "scripted 503",
        )

    assert len(run((503,) * 5, test)) == 3


def test_retries_stop_when_the_budget_is_spent() -> None:
    attempts: list[int] = []

    async def test(upstream: RestUpstream) -> None:
        for _ in range(3):
            before = upstream.retry.tokens
            with pytest.raises(UpstreamError):
                await predict(upstream)
            attempts.append(round(before - upstream.retry.tokens))
        assert upstream.retry.tokens == 4.0

    requests = run((503,) * 10, test)
    assert (attempts, len(requests)) == ([3, 2, 1], 6)


def test_a_successful_retry_earns_its_token_ratio() -> None:
    async def test(upstream: RestUpstream) -> None:
        await predict(upstream)
        assert upstream.retry.tokens == 9.1

    run((503,), test)


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (404, grpc.StatusCode.NOT_FOUND),
        (500, grpc.StatusCode.INTERNAL),
        (504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_errors_other_than_unavailable_are_not_retried(http_status, code) -> None:
    async def test(upstream: RestUpstream) -> None:
        with pytest.raises(UpstreamError) as caught:
            await predict(upstream)
        assert (caught.value.code, upstream.retry.tokens) == (code, 10.0)

    assert len(run((http_status, 503), test)) == 1


def test_unavailable_status_calls_are_retried() -> None:
    async def test(upstream: RestUpstream) -> None:
        assert await upstream.status(COLORS) == [
            VersionStatus(1, VersionState.AVAILABLE, grpc.StatusCode.OK, "")
        ]

    assert run((503,), test) == ["GET /v1/models/colors"] * 2


def test_the_first_retry_waits_at_most_the_initial_backoff(bounds) -> None:
    async def test(upstream: RestUpstream) -> None:
        upstream.retry = RetryPolicy()  # the defaults: 20 ms, doubling
        await predict(upstream)

    run((503, 503), test)
    assert bounds == [(0, 0.02), (0, 0.04)]


def test_no_retry_is_made_that_would_end_after_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda a, b: b)  # every pause its longest

    async def test(upstream: RestUpstream) -> None:
        upstream.retry = RetryPolicy(initial_backoff_s=60.0, max_backoff_s=60.0)
        with pytest.raises(UpstreamError):
            await upstream.send(b"{}", COLORS, timeout=5.0)

    assert len(run((503, 503), test)) == 1


def test_a_refused_connection_is_retried_as_unavailable() -> None:
    async def test() -> None:
        async with ScriptedTfServing() as server:
            url = server.url  # closed on leaving: nothing listens there any more
        upstream = RestUpstream(url, retry=fast_policy())
        try:
            with pytest.raises(UpstreamError) as caught:
                await upstream.status(COLORS)
        finally:
            await upstream.close()
        assert (caught.value.code, upstream.retry.tokens) == (grpc.StatusCode.UNAVAILABLE, 7.0)

    asyncio.run(asyncio.wait_for(test(), timeout=5))
