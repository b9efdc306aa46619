"""Verification split over processes finds exactly what the single pass finds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from ledger.ledger import Ledger
from ledger.log.verify import VerifyReport, plan_segments, verify_log
from tests.support import demo_envelopes
from tests.test_tamper import disable_append_only_guards


@given(size=st.integers(min_value=0, max_value=10**7), processes=st.integers(1, 8))
def test_segments_cover_the_log_with_aligned_starts(size: int, processes: int) -> None:
    segments = plan_segments(size, processes, parallel_from=0)
    if size == 0:
        assert segments == []
        return
    assert [start for start, _ in segments] == [0, *(end for _, end in segments[:-1])]
    assert segments[-1][1] == size
    if len(segments) > 1:
        width = segments[0][1]
        assert width & (width - 1) == 0
        assert all(start % width == 0 for start, _ in segments)


def both_ways(ledger: Ledger) -> tuple[VerifyReport, VerifyReport]:
    def run(processes: int) -> VerifyReport:
        return verify_log(
            ledger.engine,
            ledger.verifier,
            ledger.origin,
            signatures=True,
            processes=processes,
            parallel_from=0,
        )

    return run(1), run(2)


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    raws = demo_envelopes(ledger.engine, 150)
    for start, end in ((0, 1), (1, 64), (64, 100), (100, 150)):
        ledger.append(raws[start:end])
    return ledger


def test_parallel_verification_agrees_on_a_sound_log(filled: Ledger) -> None:
    single, split = both_ways(filled)
    assert single
    assert split
    assert (split.size, split.root_hash, split.checkpoints_checked, split.signatures_checked) == (
        single.size,
        single.root_hash,
        single.checkpoints_checked,
        single.signatures_checked,
    )
    assert (single.size, single.checkpoints_checked) == (150, 5)


def _execute(statement: str) -> Callable[[Engine], None]:
    def tamper(engine: Engine) -> None:
        disable_append_only_guards(engine)
        with engine.begin() as connection:
            connection.execute(text(statement))

    return tamper


TAMPERINGS = {
    "leaf in a later segment": (
        _execute("UPDATE log_entries SET leaf_hash = envelope WHERE idx = 120"),
        120,
    ),
    "row at a segment boundary": (_execute("DELETE FROM log_entries WHERE idx = 64"), 64),
    "first row": (_execute("DELETE FROM log_entries WHERE idx = 0"), 0),
    "tree node spanning segments": (_execute("DELETE FROM tree_nodes WHERE level = 7"), 0),
    "truncated tail": (_execute("DELETE FROM log_entries WHERE idx >= 140"), 140),
}


@pytest.mark.parametrize("case", TAMPERINGS)
def test_parallel_verification_names_the_same_entry(filled: Ledger, case: str) -> None:
    tamper, index = TAMPERINGS[case]
    tamper(filled.engine)
    single, split = both_ways(filled)
    assert single.fault is not None
    assert single.fault.index == index, single.fault
    assert split.fault == single.fault
