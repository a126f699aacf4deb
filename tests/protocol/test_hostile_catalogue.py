"""An offline verifier reads its factor catalogue from $CARBONTRACE_FACTOR_CATALOGUE: a hostile or broken file
there is a CatalogueError with the reason, never another exception out of the statement verifier; and a
statement naming an odd catalogue version (not a string, huge, unicode, control characters) is refused at
statement_market_based with a bounded reason. Uses the real market-valid conformance statement."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from carbontrace_protocol import market_based
from carbontrace_protocol.emission_factors import CATALOGUE_ENV, CatalogueError, load_catalogue
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.recorded_chain import RecordedChain
from carbontrace_protocol.statement import verify_statement
from tests.conftest import REPO_ROOT

CONFORMANCE = Path(REPO_ROOT) / "docs" / "conformance"


def _market_valid() -> dict[str, Any]:
    case: dict[str, Any] = json.loads((CONFORMANCE / "market-valid.json").read_text())
    return case


def _bundled() -> dict[str, Any]:
    from importlib import resources

    doc: dict[str, Any] = json.loads(
        resources.files("carbontrace_protocol").joinpath("data/emission_factors.json").read_text())
    return doc


def _hostile_files(tmp_path: Path) -> dict[str, Path]:
    kind_as_list = _bundled()
    kind_as_list["factors"][0]["kind"] = ["location"]  # unhashable where a name is looked up
    files = {
        "missing": tmp_path / "absent.json",
        "directory": tmp_path / "a-directory",
        "not-utf8": tmp_path / "latin1.json",
        "kind-as-list": tmp_path / "kind-as-list.json",
        "not-json": tmp_path / "not-json.json",
        "deep": tmp_path / "deep.json",
    }
    files["directory"].mkdir()
    files["not-utf8"].write_bytes(json.dumps(_bundled(), ensure_ascii=False).encode("utf-8").replace(
        b'"format"', b'"\xe9format"'))
    files["kind-as-list"].write_text(json.dumps(kind_as_list))
    files["not-json"].write_bytes(b"\x00\xff{")
    files["deep"].write_text("[" * 100_000 + "]" * 100_000)
    return files


@pytest.mark.parametrize("name", ["missing", "directory", "not-utf8", "kind-as-list", "not-json", "deep"])
def test_a_hostile_catalogue_file_is_a_catalogue_error_with_its_reason(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _hostile_files(tmp_path)[name]
    monkeypatch.setenv(CATALOGUE_ENV, str(path))
    with pytest.raises(CatalogueError) as err:
        load_catalogue()
    assert str(err.value)
    # the statement verifier meets it when it reaches the market-based section: the same typed error
    case = _market_valid()
    with pytest.raises(CatalogueError):
        verify_statement(case["document"], RecordedChain.from_json(case["chain"]), Trust.from_json(case["trust"]))


ODD_VERSIONS: list[Any] = [7, None, True, [], ["2026-12-03.1"], {"v": 1}, 2026.12, "", "x" * 1_000_000,
                           "版本-2026", "2026-12-03.1\u0000", "2026-12-03.1 ", "\u202e1.30-21-6202"]


@pytest.mark.parametrize("version", ODD_VERSIONS, ids=lambda v: f"{type(v).__name__}-{str(v)[:12]}")
def test_an_odd_catalogue_version_is_refused_with_a_bounded_reason(version: Any) -> None:
    section = copy.deepcopy(_market_valid()["document"]["statement"])
    issued_at = section["issued_at"]
    section = section["market_based"]
    section["catalogue_version"] = version
    with pytest.raises(market_based.MarketBasedError) as err:
        market_based.stated_catalogue(section, issued_at)
    assert "does not list" in str(err.value)
    assert len(str(err.value)) < 1000  # a megabyte version is not echoed back whole
