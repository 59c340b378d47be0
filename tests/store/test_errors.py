"""The one mapping of database errors to the store's own: what comes out, what goes through."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from probe.store import StoreError
from probe.store.errors import database_errors, describe


class DriverError(Exception):
    pass


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            OperationalError(
                "INSERT INTO measurements ...", {"uid": "x" * 4000}, DriverError("could not connect")
            ),
            "inventory: could not connect",
        ),
        (TimeoutError(), "inventory: timed out"),
        (ConnectionRefusedError(111, "Connect call failed"), "inventory: [Errno 111] Connect call failed"),
        (sqlite3.OperationalError("database is locked"), "inventory: database is locked"),
    ],
)
def test_a_database_error_becomes_one_line_naming_what_failed(raised: Exception, said: str) -> None:
    with pytest.raises(StoreError) as caught, database_errors("inventory"):
        raise raised
    assert str(caught.value) == said
    assert caught.value.__cause__ is raised
    assert "x" * 100 not in str(caught.value)  # never the statement's parameters


def test_an_asyncpg_error_is_a_database_error_without_importing_asyncpg_first() -> None:
    import asyncpg

    with pytest.raises(StoreError, match=r"retention: .*too many connections"), database_errors("retention"):
        raise asyncpg.TooManyConnectionsError("sorry, too many connections for role")


@pytest.mark.parametrize("bug", [KeyError("uid"), TypeError("unhashable"), ValueError("bad")])
def test_a_bug_goes_through_untouched(bug: Exception) -> None:
    with pytest.raises(type(bug)), database_errors("inventory"):
        raise bug


def test_a_long_driver_message_is_cut_to_one_line() -> None:
    assert (
        describe(DriverError("line one\nline two " + "y" * 1000)) == ("line one line two " + "y" * 1000)[:300]
    )
