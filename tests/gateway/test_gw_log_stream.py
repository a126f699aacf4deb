"""The gateway's JSON log lines go to the stderr of the moment they are written: its worker threads outlive any
swap of ``sys.stderr`` (a supervisor's redirect, a test runner's capture), and a handler holding the stream of
its set-up would write into a closed file and lose the line."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from carbontrace_host.logs import fields, setup_logging


def test_a_line_logged_after_stderr_is_swapped_and_closed_reaches_the_new_stderr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    try:
        setup_logging("INFO")
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("edge_gateway.uploader").warning("upload failed, retrying", extra=fields(retry_in_s=2))
        line = json.loads(second.getvalue())
        assert (line["msg"], line["level"], line["retry_in_s"]) == ("upload failed, retrying", "warning", 2)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
