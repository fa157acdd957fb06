"""A real PostgreSQL cluster for the receiver's PostgreSQL store: one per test session, one database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from hil.postgres import THROWAWAY, PostgresCluster, find_postgres_bindir
from kernel.errors import GatewayError

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private cluster on a free loopback port for the whole session; skipped only when PostgreSQL is not
    installed at all (`make setup` installs it)."""
    try:
        find_postgres_bindir()
    except GatewayError as exc:
        pytest.skip(str(exc))
    with PostgresCluster(THROWAWAY) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: PostgresCluster) -> str:
    """The connection string of the session cluster's `postgres` database."""
    return postgres_cluster.dsn


@pytest.fixture
def fresh_dsn(postgres_cluster: PostgresCluster) -> str:
    """An empty database of its own for one test (tests share the cluster, never a schema)."""
    return postgres_cluster.create_database(f"test_{next(_databases)}")
