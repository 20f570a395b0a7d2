"""Fixtures of the experiment tests: a real PostgreSQL server for the shared-study test of `tune`."""

from collections.abc import Iterator

import pytest

from tests.postgres import postgres_server


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server("seqvision_tune") as url:
        yield url
