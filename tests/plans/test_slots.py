"""Which slots a plan runs on: `parse_slot_numbers` and `module_slots` (before any hardware)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import stand_dict

from teststand.plans import PlanArgumentError
from teststand.plans.common import module_slots, parse_slot_numbers
from teststand.stand import TestStand

EIGHT = range(1, 9)


@pytest.mark.parametrize(
    ("selection", "numbers"),
    [
        (3, [3]),
        ([2, 1, 2], [1, 2]),
        ("1-3,7", [1, 2, 3, 7]),
        (" 5 , 2-3 ,", [2, 3, 5]),
        ("4-4", [4]),
        ("8", [8]),
        (None, list(EIGHT)),
    ],
)
def test_selections_name_sorted_distinct_slots(selection: object, numbers: list[int]) -> None:
    assert parse_slot_numbers(selection, EIGHT) == numbers  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("1-3,x", "slots '1-3,x': expected numbers and ranges like '1-4,7'"),
        ("2-", "slots '2-': expected numbers and ranges like '1-4,7'"),
        ([9, 2], "unknown slot(s) [9]; this stand has slots 1, 2, 3, 4, 5, 6, 7, 8"),
        ("7-9", "unknown slot(s) [9]; this stand has slots 1, 2, 3, 4, 5, 6, 7, 8"),
        ("", "unknown slot(s) ''; this stand has slots 1, 2, 3, 4, 5, 6, 7, 8"),
        ([], "unknown slot(s) []; this stand has slots 1, 2, 3, 4, 5, 6, 7, 8"),
    ],
)
def test_bad_selections_say_what_the_stand_has(selection: object, message: str) -> None:
    with pytest.raises(PlanArgumentError) as info:
        parse_slot_numbers(selection, EIGHT)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_every_slot_holding_a_module_by_default_and_empty_slots_refused(
    make_stand: Callable[..., TestStand],
) -> None:
    slots = stand_dict()["slots"]
    slots[2].pop("module")
    slots[5].pop("module")
    stand = make_stand(slots=slots)
    assert [s.number for s in module_slots(stand, None)] == [1, 3, 4, 6, 7, 8]
    assert [s.number for s in module_slots(stand, "3-4")] == [3, 4]
    with pytest.raises(PlanArgumentError) as info:
        module_slots(stand, "1-5")
    assert str(info.value) == (
        "slot(s) 2, 5 hold no module: give the module id under slots.N.module.id in the stand "
        "file, or leave the slot out"
    )


def test_a_stand_without_modules_has_nothing_to_test(
    make_stand: Callable[..., TestStand],
) -> None:
    slots = stand_dict()["slots"]
    for slot in slots.values():
        slot.pop("module", None)
    stand = make_stand(slots=slots)
    with pytest.raises(PlanArgumentError) as info:
        module_slots(stand, None)
    assert str(info.value) == "no slot of this stand holds a module; nothing to test"
