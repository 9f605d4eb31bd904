import numpy as np
import pytest
import torch
from training_setup import model_config

from cooper_lib.data.records import Item, SFTRecord, load_stage1_records
from cooper_lib.model import IGNORE_INDEX
from cooper_lib.training.collators import SFTCollator, Stage1Collator, find_subsequence, resize_map
from cooper_lib.training.weights import build_model


def test_resize_map_is_nearest_and_keeps_dtype():
    ids = torch.tensor([[0, 1], [2, 255]])
    out = resize_map(ids, (4, 4))
    assert out.dtype == ids.dtype and set(out.unique().tolist()) == {0, 1, 2, 255}
    assert torch.equal(out[::2, ::2], ids)
    normals = torch.randn(3, 8, 8)
    assert resize_map(normals, (4, 4)).shape == (3, 4, 4)
    assert resize_map(ids, (2, 2)) is ids


def test_find_subsequence():
    seq = np.array([5, 1, 2, 3, 1, 2, 3])
    assert find_subsequence(seq, np.array([1, 2, 3])) == 1
    assert find_subsequence(seq, np.array([1, 2, 3]), start=2) == 4
    assert find_subsequence(seq, np.array([3, 5])) == -1
    with pytest.raises(ValueError):
        find_subsequence(seq, np.array([], dtype=int))


def test_stage1_collator_targets_and_tag_labels(synthetic):
    model = build_model(model_config())
    records = load_stage1_records([synthetic["stage1"] / "records.jsonl"])[:4]
    batch = Stage1Collator(model, lm_loss_on_tag=True)(records)
    assert {m: t.shape for m, t in batch["aux_targets"].items()} == {
        "depth": (2, 16, 16),
        "segmentation": (2, 16, 16),
    }
    assert batch["aux_targets"]["segmentation"].dtype == torch.long
    text = model.processor.tokenizer.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX])
    assert text == model.layout.request_text(records[0].modality)
    assert "labels" not in Stage1Collator(model)(records)


def test_sft_collator_errors_name_the_record():
    model = build_model(model_config())
    target = torch.ones(8, 8)
    record = SFTRecord(
        "broken",
        [
            Item("text", "<think>x</think> no closing tag here", need_loss=True),
            Item("image", np.zeros((8, 8, 3), np.uint8), modality="depth", target=target),
        ],
    )
    with pytest.raises(ValueError, match="record broken: a depth map follows a turn without its closing tag"):
        SFTCollator(model)([record])
    short = SFTRecord("long", [Item("text", "q"), Item("text", "a b c d e f g", need_loss=True)])
    with pytest.raises(ValueError, match=r"records \['long'\]: longer than max_length=3"):
        SFTCollator(model, max_length=3)([short])
