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


# minimal chat templates shaped like the real ones (the tiny processors carry none)
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}{IMAGE}{% else %}{{ p['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}{IMAGE}{% else %}{{ p['text'] }}{% endif %}"
    "{% endfor %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.mark.parametrize(
    ("backbone", "template", "end_token"),
    [("tiny:qwen2_vl", QWEN_TEMPLATE, "<|im_end|>"), ("tiny:gemma3", GEMMA_TEMPLATE, "<end_of_turn>")],
)
def test_sft_labels_end_each_loss_bearing_text_with_the_backbones_end_of_turn_token(
    backbone, template, end_token
):
    # COOPER labels text_ids + [eos] (data/dataset_base.py:357-371): the token after the text is trained
    model = build_model(model_config(backbone=backbone))
    model.processor.chat_template = template.replace(
        "{IMAGE}", model.adapter.image_placeholder(model.processor)
    )
    tokenizer = model.adapter.tokenizer(model.processor)
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    call = "<think>far?</think><depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
    answer = "<think>near</think><answer>\\boxed{B}</answer>"
    record = SFTRecord(
        "r",
        [
            Item("text", "Which is nearer?", role="user"),
            Item("text", call, role="assistant", need_loss=True),
            Item("image", np.zeros((8, 8, 3), np.uint8), modality="depth", role="tool"),
            Item("text", "Here is the map.", role="tool"),
            Item("text", answer, role="assistant", need_loss=True),
        ],
    )
    collator = SFTCollator(model)
    assert collator.end_of_turn_id == end_id
    batch = collator([record])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    at = find_subsequence(ids.numpy(), np.array(answer_ids))
    end = at + len(answer_ids)
    # the answer's tokens and the end-of-turn token right after them are labelled, nothing after
    assert labels[at:end].tolist() == answer_ids
    assert int(ids[end]) == end_id and int(labels[end]) == end_id
    assert (labels[end + 1 :] == IGNORE_INDEX).all()
    # the tool call is followed by its query block (the reasoner stops on the closing tag), so
    # the label after it is no end-of-turn token; the labelled ends are exactly one end_id
    call_ids = tokenizer(call, add_special_tokens=False)["input_ids"]
    call_at = find_subsequence(ids.numpy(), np.array(call_ids))
    assert labels[call_at : call_at + len(call_ids)].tolist() == call_ids
    assert int(labels[call_at + len(call_ids)]) == IGNORE_INDEX
    assert int((labels == end_id).sum()) == 1


def test_a_template_ending_messages_in_plain_text_labels_no_end_token():
    model = build_model(model_config())  # the fallback template ends a message with "\n"
    collator = SFTCollator(model)
    assert collator.end_of_turn_id is None
    answer = "<think>x</think><answer>\\boxed{A}</answer>"
    record = SFTRecord(
        "r", [Item("text", "q", role="user"), Item("text", answer, role="assistant", need_loss=True)]
    )
    labels = collator([record])["labels"][0]
    text = model.processor.tokenizer.decode(labels[labels != IGNORE_INDEX])
    assert text == answer


def test_sft_records_without_a_system_item_get_coopers_system_prompt():
    from cooper_prompts import COOPER_SYSTEM_PROMPT

    model = build_model(model_config())
    record = SFTRecord("r", [Item("text", "q"), Item("text", "<answer>A</answer>", need_loss=True)])
    messages = SFTCollator(model).render(record)[0]
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": COOPER_SYSTEM_PROMPT}]}
