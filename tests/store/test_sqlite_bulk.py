"""How the SQLite writer cuts a batch into INSERT statements (no database needed)."""

from __future__ import annotations

import pytest

from probe.store.sqlite_bulk import largest_statement, statement_sizes


@pytest.mark.parametrize("largest", [256, 32, 1])
def test_every_row_is_in_exactly_one_statement_of_few_shapes(largest: int) -> None:
    shapes = set()
    for rows in range(0, 1200):
        sizes = statement_sizes(rows, largest)
        assert sum(sizes) == rows
        assert all(1 <= s <= largest for s in sizes)
        shapes.update(sizes)
    # Whatever sizes the timer leaves, sqlite3 compiles and caches at most log2 + 1 statements.
    assert len(shapes) <= largest.bit_length()


def test_the_largest_statement_fits_sqlites_variable_limit() -> None:
    size = largest_statement(23)
    assert size in (32, 256)  # 999 variables before SQLite 3.32, 32,766 since
    assert size * 23 <= 32_766
