"""``dumps_around``: a record's data cut around the count the server puts in (``Tx.hold_and_append``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flows.ledger.tx import dumps, dumps_around

ODD = "\"q\" \\ \n\t\x01\x7f é \u2028 😀"


@pytest.mark.parametrize("data", [
    {},
    {"trigger": None},
    {"trigger": {"labels": {"z": ODD, ODD: 1}}, "copies": 3},
    {"a": 1, "repeats": 99, "z": [1.5, None, True, ODD]},  # the key already there: its value is the count's
    {"repeat": 1, "repeats_": 2, "Repeats": 3, "répéter": 4},  # neighbours in sort order
    {"at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "n": 10**20},  # written with str, as dumps writes them
])
@pytest.mark.parametrize("count", [0, 7, 2**31 + 9])
def test_the_pieces_around_any_count_are_the_data_dumps_writes(data: dict[str, Any], count: int) -> None:
    prefix, suffix = dumps_around(data, "repeats")
    assert prefix + str(count) + suffix == dumps({**data, "repeats": count})
    # and as a JSON string inside the hashed list: escaping the pieces apart is escaping the whole
    assert dumps(prefix)[:-1] + str(count) + dumps(suffix)[1:] == dumps(dumps({**data, "repeats": count}))
