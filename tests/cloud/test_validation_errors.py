"""Issue 13, item 5: a 422 names what is wrong without echoing the request (FastAPI's default handler returned
each error's ``input``, so a large invalid body came back whole)."""

from __future__ import annotations

from fastapi.testclient import TestClient

MARKER = "secret-looking-input-"


def test_422_for_a_large_invalid_body_is_small_and_does_not_echo_it(sqlite_client: TestClient) -> None:
    payload = MARKER * 40_000  # ~840 KB: just under the body limit, so it reaches validation
    body = {"name": [payload], "extra": payload[:1000]}
    assert len(str(body)) > 800_000
    response = sqlite_client.post("/api/v1/enterprises", json=body)
    assert response.status_code == 422, response.text[:300]
    assert len(response.content) < 2_000, len(response.content)
    assert MARKER not in response.text
    errors = response.json()["detail"]
    assert errors and all(set(e) == {"loc", "type", "msg"} for e in errors)
    assert errors[0]["loc"][:2] == ["body", "name"]


def test_422_for_a_bad_query_parameter_does_not_echo_it(sqlite_client: TestClient) -> None:
    response = sqlite_client.get("/api/v1/log/checkpoints", params={"limit": MARKER * 100})
    assert response.status_code == 422
    assert MARKER not in response.text


def test_422_for_a_too_long_string_names_the_limit_not_the_value(sqlite_client: TestClient) -> None:
    response = sqlite_client.post("/api/v1/enterprises", json={"name": MARKER * 20})
    assert response.status_code == 422
    assert MARKER not in response.text and "200" in response.json()["detail"][0]["msg"]
