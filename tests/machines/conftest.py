"""Fixtures for the machine, enrollment and pool tests: small builders, no mocks.

Under pytest's importlib mode test modules cannot import each other, so the shared builders live
in machines_builders.py next to this file and this directory is put on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bootsrv.machines.model import MemoryRegistry  # noqa: E402


@pytest.fixture
def registry():
    return MemoryRegistry()
