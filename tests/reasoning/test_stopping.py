import pytest
from scripted import spatial

from cooper_lib.reasoning import TextStopper


@pytest.fixture(scope="module")
def tokenizer():
    return spatial("qwen2_vl").adapter.tokenizer(spatial("qwen2_vl").processor)


def _push_all(stopper, ids):
    pieces = []
    for i in ids:
        pieces.append(stopper.push(i))
        if stopper.matched:
            break
    return pieces


def test_a_tag_split_across_tokens_is_caught_on_its_last_token(tokenizer):
    ids = tokenizer.encode("<think>ok</think><answer>B</answer> more", add_special_tokens=False)
    closing = tokenizer.encode("</answer>", add_special_tokens=False)
    assert len(closing) > 1  # plain text: several tokens
    stopper = TextStopper(tokenizer, ["</answer>"])
    _push_all(stopper, ids)
    assert stopper.matched == "</answer>"
    assert stopper.text == "<think>ok</think><answer>B</answer>"


def test_pieces_spell_the_decoded_text(tokenizer):
    text = "Zürich is 12.5 km — far. 深度"
    ids = tokenizer.encode(text, add_special_tokens=False)
    stopper = TextStopper(tokenizer, ["</answer>"])
    pieces = _push_all(stopper, ids)
    assert "".join(pieces) == stopper.text == tokenizer.decode(ids)
    assert stopper.matched is None


def test_the_earliest_ending_stop_string_wins(tokenizer):
    stopper = TextStopper(tokenizer, ["</answer>", "</think>"])
    _push_all(stopper, tokenizer.encode("<think>a</think><answer>b</answer>", add_special_tokens=False))
    assert stopper.matched == "</think>"


def test_added_tag_tokens_stop_as_text(tokenizer):
    tag = spatial("qwen2_vl").config.spec("depth").close_tag
    stopper = TextStopper(tokenizer, [tag])
    ids = tokenizer.encode(f"<think>a</think>{tag}", add_special_tokens=False)
    assert ids[-1] == tokenizer.convert_tokens_to_ids(tag)
    _push_all(stopper, ids)
    assert stopper.matched == tag


def test_empty_stop_strings_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="stop_strings"):
        TextStopper(tokenizer, [""])
