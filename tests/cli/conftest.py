"""Fixtures of the CLI tests: no DELTASERVE_* variable leaks in, and `run` invokes the command in-process."""

from __future__ import annotations

import os

import pytest

from deltaserve import cli
from tests.cli.helpers import Run


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("DELTASERVE_"):
            monkeypatch.delenv(name)
    return monkeypatch




@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


