"""`carbontrace instruments add|list` against the cloud served over real HTTP: an enterprise registers a
certificate for its own site and lists it; a bad record, a certificate counted twice and another's site are
refused with the cloud's status and reason, exit 1; an unreachable cloud is a message and exit 1."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbontrace.cli import app

JAN_2026, FEB_2026 = 1_767_225_600, 1_769_904_000
EVIDENCE = hashlib.sha256(b"certificate scan").hexdigest()


@pytest.fixture
def served_cloud(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """The cloud app over real HTTP with one enterprise and its site: (base URL, site id, its key file)."""
    from fastapi.testclient import TestClient

    from cloud.app import create_app
    from tests.cloud.cloud_testkit import apply_enterprise, auth, make_settings, served_over_http

    app_ = create_app(make_settings(tmp_path))
    with served_over_http(app_) as url:
        client = TestClient(app_)
        enterprise_id, key, _ = apply_enterprise(client, "CLI Instruments")
        r = client.post(f"/api/v1/enterprises/{enterprise_id}/sites", headers=auth(key),
                        json={"site_id": "cli-gec", "name": "Plant", "country": "CN", "province": "CN-HE"})
        assert r.status_code == 201, r.text
        key_file = tmp_path / "enterprise.json"
        key_file.write_text(json.dumps({"api_key": key}))
        yield url, "cli-gec", key_file


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["instruments", *args])
    return result.exit_code, result.stdout, result.stderr


def _add(base: str, site_id: str, key_file: Path, *changes: str) -> tuple[int, str, str]:
    options = {"--kind": "gec", "--instrument-id": "GEC-2026-0001", "--issuer": "China GEC Platform",
               "--volume-wh": "1000000", "--delivery-start": str(JAN_2026), "--delivery-end": str(FEB_2026),
               "--evidence-sha256": EVIDENCE}
    options.update(dict(zip(changes[::2], changes[1::2], strict=True)))
    return _cli("add", "--cloud", base, "--api-key-file", str(key_file), "--site-id", site_id,
                *[x for pair in options.items() for x in pair])


def test_add_registers_and_list_reads_it_back(served_cloud: tuple[str, str, Path]) -> None:
    base, site_id, key_file = served_cloud
    code, out, err = _add(base, site_id, key_file)
    assert code == 0, (out, err)
    answer = json.loads(out)
    assert answer["record"]["site_id"] == site_id and answer["record"]["volume_wh"] == 1_000_000
    assert len(answer["record_sha256"]) == 64
    code, out, err = _cli("list", "--cloud", base, "--api-key-file", str(key_file), "--site-id", site_id)
    assert code == 0, (out, err)
    assert [(i["record"]["instrument_id"], i["record_sha256"]) for i in json.loads(out)] == [
        ("GEC-2026-0001", answer["record_sha256"])]


def test_refusals_are_printed_with_their_reason_and_exit_1(served_cloud: tuple[str, str, Path]) -> None:
    base, site_id, key_file = served_cloud
    assert _add(base, site_id, key_file)[0] == 0
    code, out, err = _add(base, site_id, key_file, "--delivery-start", str(JAN_2026 + 86_400))
    assert code == 1 and out == "", (out, err)
    assert "instrument registration refused (409)" in err and "counted twice" in err, err
    code, out, err = _add(base, site_id, key_file, "--instrument-id", "GEC-2", "--rate-kg-per-kwh-e4", "120")
    assert code == 1 and "instrument registration refused (422)" in err, err
    code, out, err = _add(base, site_id, key_file, "--instrument-id", "GEC-3", "--delivery-end", str(JAN_2026))
    assert code == 1 and "refused (422)" in err, err
    code, out, err = _add(base, "not-my-site", key_file, "--instrument-id", "GEC-4")
    assert code == 1 and "instrument registration refused (403)" in err, err
    code, out, err = _cli("list", "--cloud", base, "--api-key-file", str(key_file), "--site-id", "not-my-site")
    assert code == 1 and "instrument list refused (403)" in err, err


def test_an_unreachable_cloud_is_a_message_and_exit_1(tmp_path: Path) -> None:
    from tests.conftest import free_port

    key_file = tmp_path / "enterprise.key"
    key_file.write_text("ct_unused")
    code, _, err = _cli("list", "--cloud", f"http://127.0.0.1:{free_port()}", "--api-key-file", str(key_file),
                          "--site-id", "s")
    assert code == 1 and "cannot reach the cloud" in err, err


@pytest.mark.parametrize("key_file_text", [None, "", '{"key": "x"}', '{"api_key": ', b"\xff\xfe", "a-directory"])
def test_an_unusable_key_file_is_a_message_and_exit_2_not_a_traceback(
    served_cloud: tuple[str, str, Path], tmp_path: Path, key_file_text: str | bytes | None
) -> None:
    base, site_id, _key_file = served_cloud
    bad = tmp_path / "bad-key"
    if key_file_text == "a-directory":
        bad.mkdir()
    elif isinstance(key_file_text, bytes):
        bad.write_bytes(key_file_text)
    elif key_file_text is not None:
        bad.write_text(key_file_text)
    for code, out, err in (_add(base, site_id, bad), _cli("list", "--cloud", base, "--api-key-file", str(bad),
                                                          "--site-id", site_id)):
        assert code == 2 and out == "" and "API key" in err, (code, out, err)


@pytest.mark.parametrize("site_id", ["../enterprises", "..", ".", "cli-gec/../../registry", "cli-gec?x=1", "cli gec", "%2e%2e"])
def test_a_site_id_is_one_path_segment_never_another_route(served_cloud: tuple[str, str, Path], site_id: str) -> None:
    base, _site_id, key_file = served_cloud
    for code, out, err in (_add(base, site_id, key_file), _cli("list", "--cloud", base, "--api-key-file",
                                                               str(key_file), "--site-id", site_id)):
        assert code == 1 and out == "", (site_id, code, out, err)
        assert "(404)" in err or "(422)" in err or "(403)" in err, err
    code, out, _err = _cli("list", "--cloud", base, "--api-key-file", str(key_file), "--site-id", "cli-gec")
    assert code == 0 and json.loads(out) == []


def test_an_argument_that_is_no_text_is_the_clouds_refusal_not_a_traceback(
    served_cloud: tuple[str, str, Path]
) -> None:
    # a non-UTF-8 byte in argv reaches Python as a lone surrogate (surrogateescape)
    base, site_id, key_file = served_cloud
    code, out, err = _add(base, site_id, key_file, "--issuer", "Plant \udce9")
    assert code == 1 and out == "" and "(400)" in err and "surrogate" in err, (code, out, err)
