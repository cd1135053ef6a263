"""The link soak: 10,000 commands over one link, every reply fault mixed; no wrong value taken."""

from __future__ import annotations

from teststand.app.link_soak import READS, link_soak


async def test_no_damaged_or_stale_reply_becomes_a_value() -> None:
    result = await link_soak(10_000, seed=11)
    figures = result.figures()
    print(figures)  # the figures, for the record (pytest -s)
    assert result.commands >= 10_000 and result.faulty_fraction >= 0.08, figures
    assert set(result.fault_counts) == {
        "garble",
        "noise",
        "truncate",
        "duplicate",
        "unsolicited",
        "split",
        "drop",
    }, figures
    assert result.wrong_values == [], figures
    assert result.read_success >= 0.97, figures
    assert result.link["discards"] > 0 and result.link["garbled"] > 0, figures
    assert len(READS) >= 4  # reads alternate between parameters of different formats


async def test_without_the_strict_formats_damaged_replies_do_become_values() -> None:
    # The same soak checking only the lenient shapes: the strict checks are what keeps it clean.
    result = await link_soak(3_000, seed=11, strict=False)
    assert result.wrong_values, result.figures()
