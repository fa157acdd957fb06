"""Tests of the receiver's PostgreSQL store against a real PostgreSQL (a package: its conftest must not shadow
tests/integration/conftest.py, which other tests import as `conftest`)."""
