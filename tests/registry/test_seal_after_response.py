"""The sealer of an audited commit made while serving a web request runs once the response has
gone out (Django's ``request_finished``, sent by the response's ``close()``), so the client
never waits for it (ADR 0021 §7); outside a request it runs at the commit, as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vertebra.registry import audit


@pytest.fixture(autouse=True)
def _no_request_scope_left() -> Iterator[None]:
    """Each test ends outside any request, whatever it did (the scope is per thread)."""
    yield
    audit._request_scope.set(None)


@pytest.fixture
def sealer_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []

    def seal_pending(**kwargs: object) -> int:
        calls.append(kwargs)
        return 1

    monkeypatch.setattr(audit, "seal_pending", seal_pending)
    return calls


def test_outside_a_request_the_sealer_runs_at_the_commit(sealer_calls: list) -> None:
    audit._seal_after_commit()
    assert sealer_calls == [{}]


def test_in_a_request_the_sealer_runs_once_after_the_response(sealer_calls: list) -> None:
    audit._open_request_scope()
    audit._seal_after_commit()  # two audited commits in one request
    audit._seal_after_commit()
    assert sealer_calls == []  # nothing before the response
    audit._seal_after_response()
    assert sealer_calls == [{}]  # one sealer for both commits
    audit._seal_after_commit()  # the request is over: at once again
    assert sealer_calls == [{}, {}]


def test_a_request_without_audited_commits_runs_no_sealer(sealer_calls: list) -> None:
    audit._open_request_scope()
    audit._seal_after_response()
    assert sealer_calls == []


def test_a_failing_sealer_after_the_response_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: object) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(audit, "seal_pending", broken)
    audit._open_request_scope()
    audit._seal_after_commit()
    audit._seal_after_response()
    assert "the worker will seal" in caplog.text


def test_the_signals_are_connected() -> None:
    from django.core.signals import request_finished, request_started

    started, _ = request_started._live_receivers(None)
    finished, _ = request_finished._live_receivers(None)
    assert audit._open_request_scope in started
    assert audit._seal_after_response in finished


def test_a_streaming_response_is_sealed_before_it_streams(sealer_calls: list) -> None:
    audit._open_request_scope()
    audit._seal_after_commit()
    audit.seal_before_streaming()  # the outermost middleware, for a streaming response
    assert sealer_calls == [{}]
    audit._seal_after_response()  # the stream's close(): nothing left to seal
    assert sealer_calls == [{}]


def test_the_outermost_middleware_seals_a_streaming_response_before_it_streams(
    sealer_calls: list,
) -> None:
    from django.http import HttpResponse, StreamingHttpResponse
    from django.test import RequestFactory

    from vertebra.web.unavailable import CommittedWritesMiddleware

    def streaming_view(request: object) -> StreamingHttpResponse:
        audit._seal_after_commit()  # an audited commit during the view
        return StreamingHttpResponse(iter([b"a", b"b"]))

    def plain_view(request: object) -> HttpResponse:
        audit._seal_after_commit()
        return HttpResponse(b"ok")

    audit._open_request_scope()
    CommittedWritesMiddleware(streaming_view)(RequestFactory().get("/x"))
    assert sealer_calls == [{}]  # before the first byte
    audit._seal_after_response()
    audit._open_request_scope()
    CommittedWritesMiddleware(plain_view)(RequestFactory().get("/x"))
    assert sealer_calls == [{}]  # a plain response waits for its close()
    audit._seal_after_response()
    assert sealer_calls == [{}, {}]
