import pytest
import torch

from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer
from cooper_lib.config import SpatialConfig
from cooper_lib.layout import PerceptionLayout


@pytest.fixture(scope="module")
def layout():
    config = SpatialConfig(query_grid=(1, 3))
    tokenizer = train_tiny_tokenizer([])
    tokenizer.add_tokens(["<depth-estimation>", "</depth-estimation>", "<segmentation>", "</segmentation>"])
    tokenizer.add_tokens([config.query_token], special_tokens=True)
    return PerceptionLayout(config, tokenizer), tokenizer


def _ids(tokenizer, text):
    return torch.tensor([tokenizer.encode(text, add_special_tokens=False)])


def test_blocks_get_the_modality_of_the_nearest_tag(layout):
    layout, tokenizer = layout
    q = layout.query_text()
    text = f"look <segmentation>seg</segmentation>{q} then <depth-estimation>d</depth-estimation>{q}"
    ids = _ids(tokenizer, text)
    pos = layout.locate(ids)
    assert int(pos.mask.sum()) == 6
    assert pos.block_modality.tolist() == [1, 0]
    assert pos.rank[pos.mask].tolist() == [0, 1, 2, 0, 1, 2]
    assert (pos.modality[~pos.mask] == -1).all()


def test_request_text_is_coopers_instruction(layout):
    layout, _ = layout
    assert layout.request_text("depth") == (
        "<depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
    )


def test_partial_block_rejected(layout):
    layout, tokenizer = layout
    ids = _ids(tokenizer, "<depth-estimation>x</depth-estimation>" + layout.config.query_token * 2)
    with pytest.raises(ValueError, match="whole blocks of 3"):
        layout.locate(ids)


def test_block_without_tag_rejected(layout):
    layout, tokenizer = layout
    with pytest.raises(ValueError, match="no perception tag"):
        layout.locate(_ids(tokenizer, "hello " + layout.query_text()))


def test_interrupted_block_rejected(layout):
    layout, tokenizer = layout
    q = layout.config.query_token
    ids = _ids(tokenizer, f"<depth-estimation>x</depth-estimation>{q}{q} a {q}{q}{q} b {q}")
    with pytest.raises(ValueError, match="interrupted"):
        layout.locate(ids)


def test_multi_token_tag_rejected():
    tokenizer = train_tiny_tokenizer([])
    with pytest.raises(ValueError, match="one added token"):
        PerceptionLayout(SpatialConfig(), tokenizer)
