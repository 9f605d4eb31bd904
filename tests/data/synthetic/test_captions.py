import json

import pytest
from PIL import Image

from cooper_lib.data.records import load_sft_records
from cooper_lib.data.synthetic import SceneConfig, render_scenes, write_dataset
from cooper_lib.data.synthetic.captions import CAPTION_PROMPT, caption, caption_record, map_caption_record
from cooper_lib.data.synthetic.loader import load_synthetic_dataset
from cooper_lib.data.synthetic.qa import default_min_pixels
from cooper_lib.data.turns import tool_call

SCENES = render_scenes(6, seed=3, config=SceneConfig(width=48, height=48, min_objects=2))


def test_caption_names_the_askable_objects_nearest_first():
    for scene in SCENES:
        shown = [o for o in scene.objects if o.visible_pixels >= default_min_pixels(scene)]
        parts = caption(scene).split("; ")
        assert len(parts) == len(shown) >= 1
        distances = [float(part.split()[2]) for part in parts]
        assert distances == sorted(distances)
        nearest = min(shown, key=lambda o: o.distance)
        assert parts[0] == f"{nearest.colour} {nearest.shape} {nearest.distance:.1f} m"
    assert caption(SCENES[0], min_pixels=10**6) == "no objects"


def test_caption_without_distances_names_the_same_objects_in_the_same_order():
    for scene in SCENES:
        named = caption(scene, distances=False)
        assert not any(ch.isdigit() for ch in named)
        assert named.split("; ") == [" ".join(part.split()[:2]) for part in caption(scene).split("; ")]
    record = caption_record(SCENES[0], SCENES[0].rgb, "s0", distances=False)
    assert record.items[2].value == f"<answer>{caption(SCENES[0], distances=False)}</answer>"


def test_caption_record_trains_on_the_caption_only():
    record = caption_record(SCENES[0], SCENES[0].rgb, "s0")
    assert [(i.type, i.role, i.need_loss) for i in record.items] == [
        ("image", "user", False),
        ("text", "user", False),
        ("text", "assistant", True),
    ]
    assert record.items[1].value == CAPTION_PROMPT
    assert record.items[2].value == f"<answer>{caption(SCENES[0])}</answer>"


def test_map_caption_record_reads_the_distances_after_a_depth_call_it_does_not_train():
    scene = SCENES[1]
    record = map_caption_record(scene, scene.rgb, "maps/s1_depth.png", "s1-map")
    assert [(i.type, i.role, i.need_loss, i.modality) for i in record.items] == [
        ("image", "user", False, None),
        ("text", "user", False, None),
        ("text", "assistant", False, None),
        ("image", "tool", False, "depth"),
        ("text", "tool", False, None),
        ("text", "assistant", True, None),
    ]
    assert record.items[2].value == "<think></think>" + tool_call("depth")
    assert record.items[3].value == "maps/s1_depth.png" and record.items[3].target is None
    assert record.items[-1].value == f"<answer>{caption(scene)}</answer>"  # with the distances
    assert record.meta["category"] == "map_caption"


def _captions(folder, **options):
    """Three caption scenes of 32 x 32 pixels, each with an object, written under `folder`."""
    config = SceneConfig(width=32, height=32, min_objects=1)
    return write_dataset(folder, n=3, seed=2, stage="caption", config=config, **options)


def test_caption_datasets_with_maps_write_a_depth_map_and_a_map_caption_per_scene(tmp_path):
    root = _captions(
        tmp_path / "base", caption_distances=False, caption_maps=True, depth_display_range=(0.001, 7.0)
    )
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["caption_maps"] is True and manifest["codecs"]["depth"]["max_depth"] == 7.0
    rows = load_sft_records([root / "records.jsonl"])
    photo, maps = rows[0::2], rows[1::2]
    assert [r.id for r in maps] == [f"{r.id}-map" for r in photo]
    assert not any(ch.isdigit() for row in photo for ch in row.items[-1].value)
    assert all(any(ch.isdigit() for ch in row.items[-1].value) for row in maps)
    for row in maps:
        shown = root / row.items[3].value
        assert shown.exists() and Image.open(shown).size == (32, 32)
    with pytest.raises(ValueError, match="caption_maps: only the caption stage"):
        write_dataset(tmp_path / "sft", n=1, stage="sft", caption_maps=True)


def test_caption_datasets_are_written_and_read_as_sft_records(tmp_path):
    root = write_dataset(
        tmp_path / "base", n=3, seed=2, stage="caption", config=SceneConfig(width=32, height=32)
    )
    assert json.loads((root / "manifest.json").read_text())["stage"] == "caption"
    rows = load_sft_records([root / "records.jsonl"])
    assert len(rows) == 3 and all(row.items[-1].need_loss for row in rows)
    assert len(load_synthetic_dataset(root, stage="caption")) == 3
    assert json.loads((root / "manifest.json").read_text())["caption_distances"] is True


def test_caption_datasets_without_distances_say_so_in_the_manifest(tmp_path):
    root = _captions(tmp_path / "base", caption_distances=False)
    assert json.loads((root / "manifest.json").read_text())["caption_distances"] is False
    answers = [row.items[-1].value for row in load_sft_records([root / "records.jsonl"])]
    assert answers and not any(ch.isdigit() for answer in answers for ch in answer)


def test_caption_datasets_export_to_hf_like_sft_sets(tmp_path):
    pytest.importorskip("datasets")
    from cooper_lib.data.synthetic import to_hf_dataset

    root = write_dataset(
        tmp_path / "base", n=2, seed=2, stage="caption", config=SceneConfig(width=32, height=32)
    )
    rows = to_hf_dataset(root)
    assert len(rows) == 2 and rows[0]["items"][-1]["value"].startswith("<answer>")
