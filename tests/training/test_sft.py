import base64
import io
import json

import numpy as np
import torch
from PIL import Image
from training_setup import model_config, optim_config, run_config

from cooper_lib.data.records import load_sft_records
from cooper_lib.model import IGNORE_INDEX
from cooper_lib.training.collators import SFTCollator
from cooper_lib.training.config import SFTConfig
from cooper_lib.training.sft import InterleavedSFTTrainer
from cooper_lib.training.weights import build_model

COOPER_SYSTEM = "You are a specialized multimodal assistant."
TURN_1 = (
    "<think>The question asks which object is closer, depth helps.</think>"
    "<depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
)
TURN_2 = (
    "<think>The red sphere is darker, so it is closer.</think><answer>The red sphere. \\boxed{A}</answer>"
)


def png_base64(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_cooper_jsonl(path):
    """Two rows in COOPER's own SFT format: `interleaved_reason` items, base64 images, string flags."""
    rows = [
        {
            "interleaved_reason": [
                {"type": "text", "value": COOPER_SYSTEM, "need_loss": "false"},
                {"type": "image", "value": png_base64(0), "need_loss": "false"},
                {
                    "type": "text",
                    "value": "Which is closer, the red sphere (A) or the blue box (B)?",
                    "need_loss": "false",
                },
                {"type": "text", "value": TURN_1, "need_loss": "true"},
                {"type": "image", "value": "data:image/png;base64," + png_base64(1), "need_loss": "false"},
                {
                    "type": "text",
                    "value": "Here is the result of the depth-estimation.",
                    "need_loss": "false",
                },
                {"type": "text", "value": TURN_2, "need_loss": "true"},
            ]
        },
        {
            "interleaved_reason": [
                {"type": "image", "value": png_base64(2), "need_loss": "false"},
                {"type": "text", "value": "Is there a cone?", "need_loss": "false"},
                {
                    "type": "text",
                    "value": "<think>I see one.</think><answer>\\boxed{yes}</answer>",
                    "need_loss": "true",
                },
            ]
        },
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def labelled_text(tokenizer, batch, row):
    labels = batch["labels"][row]
    return tokenizer.decode(labels[labels != IGNORE_INDEX])


def test_loads_coopers_sft_jsonl_unchanged_and_labels_exactly_the_loss_items(tmp_path):
    records = load_sft_records([write_cooper_jsonl(tmp_path / "cooper.jsonl")])
    assert [len(r.items) for r in records] == [7, 3]
    assert [i.need_loss for i in records[0].items] == [False, False, False, True, False, False, True]
    model = build_model(model_config())
    batch = SFTCollator(model)(records)
    tokenizer = model.processor.tokenizer
    assert labelled_text(tokenizer, batch, 0) == TURN_1 + TURN_2
    assert labelled_text(tokenizer, batch, 1) == "<think>I see one.</think><answer>\\boxed{yes}</answer>"
    # each labelled position holds its own token (the model shifts labels itself)
    keep = batch["labels"] != IGNORE_INDEX
    assert torch.equal(batch["labels"][keep], batch["input_ids"][keep])
    assert "aux_targets" not in batch  # COOPER's rows carry no true maps
    assert batch["pixel_values"].shape[0] > 0 and batch["image_grid_thw"].shape[0] == 3
    # the tool call still gets its query block, laid out as the reasoner does at inference
    ids = batch["input_ids"][0].tolist()
    close = tokenizer.convert_tokens_to_ids("</depth-estimation>")
    k = model.config.num_queries
    start = ids.index(model.layout.query_id)
    assert ids[start - 1] == close and ids[start : start + k] == [model.layout.query_id] * k
    assert (
        ids.count(model.layout.query_id) == k and model.layout.query_id not in batch["input_ids"][1].tolist()
    )
    out = model(**batch)
    assert torch.isfinite(out.lm_loss) and out.aux_losses == {}
    assert out.query_states["depth"].shape[0] == 1


def test_blocks_without_true_maps_share_a_batch_with_supervised_ones(synthetic, tmp_path):
    cooper = load_sft_records([write_cooper_jsonl(tmp_path / "cooper.jsonl")])[0]
    supervised = next(
        r
        for r in load_sft_records([synthetic["sft"] / "records.jsonl"])
        if [i.modality for i in r.items if i.target is not None] == ["depth"]
    )
    model = build_model(model_config())
    batch = SFTCollator(model)([supervised, cooper])
    depth = batch["aux_targets"]["depth"]
    assert depth.shape == (2, 16, 16)
    assert torch.isfinite(depth[0]).any() and torch.isnan(depth[1]).all()  # the COOPER block: no map
    out = model(**batch)
    assert torch.isfinite(out.aux_losses["depth"])
    out.loss.backward()
    grads = model.queries["depth"].grad
    assert grads is not None and torch.isfinite(grads).all() and grads.abs().sum() > 0


def test_true_maps_after_tool_calls_supervise_the_heads(synthetic):
    records = [
        r
        for r in load_sft_records([synthetic["sft"] / "records.jsonl"])
        if any(i.target is not None for i in r.items)
    ]
    model = build_model(model_config())
    collator = SFTCollator(model)
    batch = collator(records[:2])
    k = model.config.num_queries
    modalities = [i.modality for r in records[:2] for i in r.items if i.target is not None]
    assert {m: t.shape for m, t in batch["aux_targets"].items()} == {
        m: (modalities.count(m), 16, 16) for m in set(modalities)
    }
    ids = batch["input_ids"][0].tolist()
    close = model.processor.tokenizer.convert_tokens_to_ids(model.config.spec(modalities[0]).close_tag)
    start = ids.index(model.layout.query_id)
    assert ids[start - 1] == close  # the query block follows the tool call's closing tag
    assert ids[start : start + k] == [model.layout.query_id] * k
    assert (
        batch["labels"][0, start - 1] == close
        and (batch["labels"][0, start : start + k] == IGNORE_INDEX).all()
    )
    out = model(**batch)
    assert set(out.aux_losses) == set(modalities) and torch.isfinite(out.loss)
    plain = SFTCollator(model, supervise_maps=False)(records[:2])
    assert "aux_targets" not in plain  # no supervision; the layout (query blocks included) is the same
    assert torch.equal(plain["input_ids"], batch["input_ids"])


def test_sft_training_lowers_the_held_out_lm_loss(synthetic, tmp_path):
    data = str(synthetic["sft"] / "records.jsonl")
    torch.manual_seed(0)
    config = SFTConfig(
        model=model_config(),
        optim=optim_config(),
        run=run_config(tmp_path, max_steps=6, batch_size=2),
        data=[data],
        eval_data=[data],
        eval_samples=6,
    )
    trainer = InterleavedSFTTrainer(build_model(config.model), config)
    before = trainer.run_evaluation()
    trainer.train()
    after = trainer.run_evaluation()
    # bound: 6 steps of 2 traces at lr 2e-3 cut the held-out LM loss by at least 5%
    assert after["lm_loss"] < 0.95 * before["lm_loss"], (before, after)
    assert after["loss"] < before["loss"]


def test_sft_resume_continues_the_same_trajectory(synthetic, tmp_path):
    data = [str(synthetic["sft"] / "records.jsonl")]

    def trainer(out, seed):
        torch.manual_seed(seed)  # what the resumed run needs must come from the checkpoint
        config = SFTConfig(
            model=model_config(),
            optim=optim_config(),
            run=run_config(out, max_steps=4, batch_size=2),
            data=data,
        )
        return InterleavedSFTTrainer(build_model(config.model), config)

    straight = trainer(tmp_path / "a", 0).train().history
    first = trainer(tmp_path / "b", 0).train(stop_at=2).history
    resumed = trainer(tmp_path / "b", 11)
    assert resumed.step == 2
    second = resumed.train().history
    for key in ("loss", "lm_loss"):
        torch.testing.assert_close(
            [h[key] for h in first + second], [h[key] for h in straight], rtol=1e-6, atol=1e-7
        )
