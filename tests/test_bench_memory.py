"""The memory bench's summary: what counts as a recurrence, where a missed one's pattern stood in each recall."""

from __future__ import annotations

from bot.benchmarks.memory import Row, summarise

A = ("cart", "cpu")
B = ("db", "latency")


def _row(case: str, pattern: tuple[str, str], recurrence: bool, *, given: list[tuple[str, str]],
         recalled: list[tuple[str, str]], top_with: str, top_without: str = "", seen_open: bool = False) -> Row:
    return Row(case, pattern, recurrence, [f"m-{i}" for i in range(len(recalled))], recalled,
               top_without or top_with, top_with, len(given), given, seen_open)


def test_recurrence_figures_and_misses() -> None:
    rows = [
        _row("c1", A, False, given=[], recalled=[], top_with="cart"),
        _row("c2", A, True, given=[B, A], recalled=[A], top_with="cart"),
        _row("c3", B, False, given=[A], recalled=[A], top_with="cart", seen_open=True),
        _row("c4", B, True, given=[A], recalled=[A, B], top_with="cart", top_without="db"),
    ]
    s = summarise("x", rows, 1.0)
    assert s["recurrences"] == 2 and s["recurrences_open"] == 1
    assert s["recall_at_1"] == 0.5 and s["recall_at_3"] == 1.0 and s["given_at_3"] == 0.5
    assert s["ac1_without_memory"] == 1.0 and s["ac1_with_memory"] == 0.5
    assert s["changed_top"] == 1
    assert s["misses"] == [{"case": "c4", "top_with_memory": "cart", "given_rank": None, "recalled_rank": 2}]


def test_no_recurrence_is_not_a_zero() -> None:
    s = summarise("x", [_row("c1", A, False, given=[], recalled=[], top_with="cart", seen_open=True)], 1.0)
    assert s["recurrences"] == 0 and s["recurrences_open"] == 1
    assert s["recall_at_1"] is None and s["ac1_with_memory"] is None and s["misses"] == []
    assert s["ac1_all_with_memory"] == 1.0
