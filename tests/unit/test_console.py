"""CLI console: text with square brackets (trial ids, allowed-value lists) is printed verbatim."""
from sweeps.console import console, rows_table


def test_brackets_are_not_markup():
    with console.capture() as cap:
        console.print("  [b7f7e4aa] art epoch 3")  # a hex trial id that rich would read as a style
        console.print("regime.params.bn: allowed [keep, eval, train]")
        console.print(rows_table("t", [{"trial": "[red]", "regime": "x"}], ["trial", "regime"]))
    out = cap.get()
    assert "[b7f7e4aa] art epoch 3" in out and "allowed [keep, eval, train]" in out and "[red]" in out
