"""Fixtures of the component tests: a MergeWorld (an agent database and work area) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.components.merge_env import MergeWorld


@pytest.fixture
def world(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[MergeWorld]:
    """A MergeWorld on `db_url`; an indirect parameter, when given, is its merge policy."""
    made = MergeWorld(tmp_path, db_url, getattr(request, "param", None))
    yield made
    made.close()
