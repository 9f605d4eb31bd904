import re

from cooper_lib.modalities.palettes import ADE20K_CLASSES, ADE20K_PALETTE_HEX


def test_one_name_and_one_colour_per_class():
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE_HEX) == 150
    assert len(set(ADE20K_CLASSES)) == 150
    assert all(re.fullmatch(r"[0-9a-f]{6}", h) for h in ADE20K_PALETTE_HEX)
    assert ADE20K_CLASSES[:4] == ("wall", "building", "sky", "floor") and ADE20K_CLASSES[-1] == "flag"


def test_the_only_repeated_colour_is_road_and_skyscraper():
    repeated = {h for h in ADE20K_PALETTE_HEX if ADE20K_PALETTE_HEX.count(h) > 1}
    assert repeated == {"8c8c8c"}
    assert [ADE20K_CLASSES[i] for i, h in enumerate(ADE20K_PALETTE_HEX) if h == "8c8c8c"] == [
        "road",
        "skyscraper",
    ]
