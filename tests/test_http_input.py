"""Bad HTTP input gets a 400 that names the problem, and unknown paths and methods answer in the
JSON error format (issue 15, item 16) — on a real HTTP listener in front of an in-memory TF
Serving."""

from __future__ import annotations

import gzip

import pytest

from gateway.server import GatewayServer
from tests.fakes import FakeUpstream
from tests.httpraw import Answer, exchange, multipart, png, post, with_gateway

CLASSIFY = "/v1/models/colors:classify"
FORM = "Content-Type: multipart/form-data; boundary=XyZ"


def answer_to(request: bytes, **settings: object) -> Answer:
    answers: list[Answer] = []

    async def test(server: GatewayServer, upstream: FakeUpstream) -> None:
        answers.append(await exchange(server.http_port or 0, request))

    with_gateway(test, **settings)
    return answers[0]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("top_k=-1", "top_k must be in 0..9223372036854775807 (0: the model's default), got '-1'"),
        (
            "max_detections=-5",
            "max_detections must be in 0..9223372036854775807 (0: the model's default), got '-5'",
        ),
        ("min_score=nan", "min_score must be in 0.0..1.0, got 'nan'"),
        ("min_score=1.5", "min_score must be in 0.0..1.0, got '1.5'"),
        ("min_score=-0.1", "min_score must be in 0.0..1.0, got '-0.1'"),
        (
            "version=" + "1" + "0" * 30,
            f"version must be in 0..9223372036854775807, got '1{'0' * 30}'",
        ),
        ("top_k=many", "top_k must be a int, got 'many'"),
    ],
)
def test_an_option_out_of_range_is_refused_and_named(query: str, message: str) -> None:
    answer = answer_to(post(f"{CLASSIFY}?{query}", png()))
    assert (answer.status, answer.error()) == (400, ("INVALID_ARGUMENT", message))


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            "Content-Type: multipart/form-data",
            multipart("XyZ", ("image", png())),
            "malformed multipart body: boundary missed",
        ),
        (
            FORM,
            b"not a form at all\r\n",
            "malformed multipart body: Could not find starting boundary",
        ),
        (FORM, b'--XyZ\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc', "malformed"),
        (FORM, b"--XyZ--\r\n", "malformed multipart body: no parts"),
    ],
    ids=["no-boundary", "not-delimited", "unterminated", "empty"],
)
def test_a_malformed_multipart_body_is_refused(
    content_type: str, body: bytes, message: str
) -> None:
    answer = answer_to(post(CLASSIFY, body, content_type))
    assert answer.status == 400, answer.body
    code, said = answer.error()
    assert code == "INVALID_ARGUMENT" and said.startswith(message), said


def test_a_form_with_too_many_fields_is_refused_and_says_so() -> None:
    fields = [(f"f{i}", b"x") for i in range(11)]
    answer = answer_to(post(CLASSIFY, multipart("XyZ", *fields), FORM), max_multipart_fields=10)
    assert (answer.status, answer.error()) == (
        400,
        ("INVALID_ARGUMENT", "the multipart form has over 10 fields"),
    )


def test_a_body_that_does_not_match_its_content_encoding_is_refused() -> None:
    answer = answer_to(post(CLASSIFY, png(), "Content-Encoding: gzip"))
    assert answer.status == 400, answer.body
    code, message = answer.error()
    assert code == "INVALID_ARGUMENT"
    assert message.startswith("the request body cannot be read (Content-Encoding gzip)")


def test_a_gzipped_body_that_matches_its_content_encoding_is_read() -> None:
    answer = answer_to(post(CLASSIFY, gzip.compress(png()), "Content-Encoding: gzip"))
    assert answer.status == 200, answer.body


def test_a_body_over_the_limit_is_refused_from_its_content_length() -> None:
    answer = answer_to(post(CLASSIFY, b"", length=2000), max_message_bytes=1000)
    assert (answer.status, answer.error()) == (
        413,
        ("RESOURCE_EXHAUSTED", "the request body is over the gateway's limit of 1000 bytes"),
    )


def test_a_form_over_the_limit_is_refused() -> None:
    body = multipart("XyZ", ("image", b"x" * 3000))
    answer = answer_to(_chunked(body), max_message_bytes=1000)  # no Content-Length to go by
    assert answer.status == 413, answer.body


def _chunked(body: bytes) -> bytes:
    head = (
        f"POST {CLASSIFY} HTTP/1.1\r\nHost: gateway\r\n{FORM}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head.encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def test_an_unknown_path_answers_404_in_the_json_error_format() -> None:
    answer = answer_to(b"GET /v2/nothing HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert (answer.status, answer.error()) == (404, ("NOT_FOUND", "no such path: /v2/nothing"))


def test_a_wrong_method_answers_405_in_the_json_error_format() -> None:
    answer = answer_to(b"GET /v1/models/colors:classify HTTP/1.1\r\nHost: gateway\r\n\r\n")
    assert answer.status == 405
    assert answer.headers["allow"] == "POST"
    assert answer.error() == ("UNIMPLEMENTED", "/v1/models/colors:classify takes POST, not GET")
