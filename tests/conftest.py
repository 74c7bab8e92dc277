"""Shared fixtures. Integration tests get a `lab` (network namespaces) or are skipped with the
reason; with BOOTSRV_REQUIRE_INTEGRATION=1 (set by .ci/run) such a skip becomes a failure, so CI
always runs them."""

from __future__ import annotations

import os

import pytest

from bootsrv.lab import netns as labmod

REQUIRE = os.environ.get("BOOTSRV_REQUIRE_INTEGRATION") == "1"


def need(ok: bool, reason: str) -> None:
    """Skip (or fail under CI) when a real peer or privilege is missing."""
    if ok:
        return
    if REQUIRE:
        pytest.fail(f"integration prerequisite missing under BOOTSRV_REQUIRE_INTEGRATION=1: {reason}")
    pytest.skip(reason)


@pytest.fixture
def lab():
    ok, reason = labmod.available()
    need(ok, reason)
    with labmod.Lab() as the_lab:
        yield the_lab
