"""The hardware documents say the same pins as the firmware and the provisioning tool, and their links work."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from carbontrace_device.config_defaults import DEFAULTS

from carbontrace.provision_plan import BOARD_PINS
from tests.conftest import REPO_ROOT

HARDWARE = REPO_ROOT / "hardware"
WIRING = {"esp32": HARDWARE / "wiring-esp32.md", "picow": HARDWARE / "wiring-picow.md"}


def _settings_table(doc: Path) -> dict[str, int]:
    text = doc.read_text()
    section = text.split("## Firmware settings", 1)[1]
    rows = re.findall(r"^\| (\w+) \| (\d+) \|", section, flags=re.MULTILINE)
    return {name: int(value) for name, value in rows}


@pytest.mark.parametrize("board", sorted(WIRING))
def test_wiring_doc_pins_match_the_provisioning_tool(board: str) -> None:
    assert _settings_table(WIRING[board]) == BOARD_PINS[board]


def test_esp32_doc_pins_are_the_firmware_defaults() -> None:
    table = _settings_table(WIRING["esp32"])
    assert table == {key: DEFAULTS[key] for key in table}


@pytest.mark.parametrize("doc", sorted(HARDWARE.glob("*.md")), ids=lambda p: p.name)
def test_local_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


@pytest.mark.parametrize("svg", sorted(HARDWARE.glob("*.svg")), ids=lambda p: p.name)
def test_svg_diagrams_are_well_formed(svg: Path) -> None:
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_every_hardware_document_exists() -> None:
    names = {p.name for p in HARDWARE.iterdir()}
    assert {"README.md", "wiring-esp32.md", "wiring-picow.md", "bom.md", "placement.md", "secure-element.md",
            "wiring-esp32.svg", "wiring-picow.svg"} <= names
