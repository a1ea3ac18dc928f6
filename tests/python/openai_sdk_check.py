#!/usr/bin/env python3
"""Checks that the official `openai` Python SDK works against a running Sluice.

Driven by tests/tests/sdk_openai.rs, which starts a fake upstream (model `echo`) and a gateway
serving model `gpt-test` (allowed for the key) and `other` (not allowed for the key). Can also
be run by hand against such a gateway:

    SLUICE_BASE_URL=http://127.0.0.1:8080/v1 SLUICE_KEY=sk-... SLUICE_BAD_KEY=sk-nope \
        .cache/venv/bin/python tests/python/openai_sdk_check.py

Environment:
    SLUICE_BASE_URL  the SDK base_url, e.g. http://127.0.0.1:PORT/v1
    SLUICE_KEY       a valid virtual key whose allow-list is exactly [gpt-test]
    SLUICE_BAD_KEY   a key that is not configured

Prints `ok <check>` per passing check; exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable

import openai
from openai import OpenAI

MODEL = "gpt-test"
FORBIDDEN_MODEL = "other"
UNKNOWN_MODEL = "does-not-exist"
PROMPT = "Hello from the openai SDK, 42 ünïcödé"
EXPECTED = "echo: " + PROMPT
EMBEDDING_DIMS = 8


class CheckFailed(Exception):
    """A check's expectation did not hold."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise CheckFailed(f"environment variable {name} is not set")
    return value


def client_for(base_url: str, key: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10.0)


def expect_error(name: str, exc_type: type[openai.APIStatusError], status: int,
                 call: Callable[[], Any]) -> openai.APIStatusError:
    """Runs `call`, which must raise `exc_type` with an OpenAI-shaped error body."""
    try:
        result = call()
    except exc_type as e:
        check(e.status_code == status,
              f"{name}: expected HTTP {status}, got {e.status_code}: {e}")
        body = e.body
        check(isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"],
              f"{name}: expected an OpenAI-shaped error body with a message, got {body!r}")
        check("type" in body, f"{name}: error body has no 'type': {body!r}")
        return e
    except openai.APIError as e:
        raise CheckFailed(
            f"{name}: expected {exc_type.__name__} (HTTP {status}), got "
            f"{type(e).__name__}: {e} (status {getattr(e, 'status_code', None)}, "
            f"body {getattr(e, 'body', None)!r})"
        ) from e
    raise CheckFailed(f"{name}: expected {exc_type.__name__} (HTTP {status}), "
                      f"but the call succeeded: {result!r}")


def check_chat(c: OpenAI) -> None:
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": PROMPT},
        ],
    )
    header_id = raw.headers.get("x-request-id")
    resp = raw.parse()
    check(len(resp.choices) == 1, f"chat: expected 1 choice, got {len(resp.choices)}")
    content = resp.choices[0].message.content
    check(content is not None and content.startswith("echo: "),
          f"chat: content should start with 'echo: ', got {content!r}")
    check(content == EXPECTED, f"chat: content should be {EXPECTED!r}, got {content!r}")
    check(resp.choices[0].message.role == "assistant",
          f"chat: role should be 'assistant', got {resp.choices[0].message.role!r}")
    check(resp.usage is not None, "chat: response has no usage")
    assert resp.usage is not None
    check(resp.usage.total_tokens > 0,
          f"chat: usage.total_tokens should be > 0, got {resp.usage.total_tokens}")
    request_id = getattr(resp, "_request_id", None) or header_id
    check(bool(request_id),
          f"chat: no request id (neither response._request_id nor x-request-id header); "
          f"headers: {dict(raw.headers)}")
    # The plain (non-raw) call path must also work and carry _request_id.
    plain = c.chat.completions.create(model=MODEL,
                                      messages=[{"role": "user", "content": PROMPT}])
    check(plain.choices[0].message.content == EXPECTED,
          f"chat (plain): content should be {EXPECTED!r}, got "
          f"{plain.choices[0].message.content!r}")
    check(bool(plain._request_id),
          "chat (plain): response._request_id is empty (x-request-id header missing?)")


def check_stream(c: OpenAI) -> None:
    stream = c.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = []
    usage_chunks = []
    n_chunks = 0
    finish_reasons = []
    for chunk in stream:
        n_chunks += 1
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                text.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
        if chunk.usage is not None:
            usage_chunks.append(chunk)
    joined = "".join(text)
    check(n_chunks > 1, f"stream: expected several chunks, got {n_chunks}")
    check(joined == EXPECTED, f"stream: concatenated deltas should be {EXPECTED!r}, got {joined!r}")
    check(finish_reasons == ["stop"],
          f"stream: expected exactly one finish_reason 'stop', got {finish_reasons!r}")
    check(len(usage_chunks) == 1,
          f"stream: expected exactly one chunk with usage (include_usage), got {len(usage_chunks)}")
    last = usage_chunks[0]
    assert last.usage is not None
    check(last.usage.total_tokens > 0,
          f"stream: final usage.total_tokens should be > 0, got {last.usage.total_tokens}")
    check(last.choices == [],
          f"stream: the usage chunk should have empty choices, got {last.choices!r}")


def check_embeddings(c: OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it to floats.
    resp = c.embeddings.create(model=MODEL, input=["a", "b"])
    check(len(resp.data) == 2, f"embeddings: expected 2 vectors, got {len(resp.data)}")
    for i, item in enumerate(resp.data):
        check(item.index == i, f"embeddings: item {i} has index {item.index}")
        check(isinstance(item.embedding, list) and len(item.embedding) == EMBEDDING_DIMS,
              f"embeddings: vector {i} should have {EMBEDDING_DIMS} floats, got "
              f"{item.embedding!r}")
        check(all(isinstance(x, float) for x in item.embedding),
              f"embeddings: vector {i} should hold floats, got {item.embedding!r}")
    check(resp.data[0].embedding != resp.data[1].embedding,
          "embeddings: inputs 'a' and 'b' got identical vectors")
    check(resp.usage is not None and resp.usage.prompt_tokens > 0,
          f"embeddings: usage.prompt_tokens should be > 0, got {resp.usage!r}")


def check_models(c: OpenAI) -> None:
    ids = [m.id for m in c.models.list()]
    check(ids == [MODEL], f"models.list: expected exactly [{MODEL!r}] for this key, got {ids!r}")


def check_bad_key(base_url: str, bad_key: str) -> None:
    bad = client_for(base_url, bad_key)
    expect_error("bad key", openai.AuthenticationError, 401,
                 lambda: bad.chat.completions.create(
                     model=MODEL, messages=[{"role": "user", "content": "hi"}]))


def check_forbidden_model(c: OpenAI) -> None:
    expect_error("model not allowed for key", openai.PermissionDeniedError, 403,
                 lambda: c.chat.completions.create(
                     model=FORBIDDEN_MODEL, messages=[{"role": "user", "content": "hi"}]))


def check_unknown_model(c: OpenAI) -> None:
    e = expect_error("unknown model", openai.NotFoundError, 404,
                     lambda: c.chat.completions.create(
                         model=UNKNOWN_MODEL, messages=[{"role": "user", "content": "hi"}]))
    check(e.code == "model_not_found",
          f"unknown model: expected error code 'model_not_found', got {e.code!r}")


def check_bad_request(c: OpenAI) -> None:
    expect_error("invalid role", openai.BadRequestError, 400,
                 lambda: c.chat.completions.create(
                     model=MODEL,
                     messages=[{"role": 5, "content": "x"}],  # type: ignore[list-item, misc]
                 ))


def main() -> int:
    try:
        base_url = env("SLUICE_BASE_URL")
        key = env("SLUICE_KEY")
        bad_key = env("SLUICE_BAD_KEY")
    except CheckFailed as e:
        print(f"FAIL setup: {e}", file=sys.stderr)
        return 2

    c = client_for(base_url, key)
    checks: list[tuple[str, Callable[[], None]]] = [
        ("chat", lambda: check_chat(c)),
        ("stream", lambda: check_stream(c)),
        ("embeddings", lambda: check_embeddings(c)),
        ("models", lambda: check_models(c)),
        ("bad-key", lambda: check_bad_key(base_url, bad_key)),
        ("forbidden-model", lambda: check_forbidden_model(c)),
        ("unknown-model", lambda: check_unknown_model(c)),
        ("bad-request", lambda: check_bad_request(c)),
    ]
    print(f"openai SDK {openai.__version__} against {base_url}", flush=True)
    for name, fn in checks:
        try:
            fn()
        except CheckFailed as e:
            print(f"FAIL {name}: {e}", file=sys.stderr, flush=True)
            return 1
        except Exception as e:  # an SDK error where none was expected, a timeout, ...
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}", file=sys.stderr)
            body = getattr(e, "body", None)
            if body is not None:
                print(f"  error body: {body!r}", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
            return 1
        print(f"ok {name}", flush=True)
    print(f"all {len(checks)} openai SDK checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
