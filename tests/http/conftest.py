"""Fixtures for the HTTP boot tests: the real app over a MemoryRegistry and the repo's profiles.

Under pytest's importlib mode test modules cannot import each other, so the builders live in
boot_builders.py next to this file and this directory is put on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from boot_builders import make_wiring  # noqa: E402

from bootsrv.http.app import create_app  # noqa: E402


@pytest.fixture
def wiring(tmp_path):
    return make_wiring(tmp_path)


@pytest.fixture
def client(wiring):
    return create_app(wiring).test_client()
