"""`trl.GRPOTrainer` on a `SpatialModel`: the HF model contract TRL 1.16 reads, and a real run."""

import pytest
import torch
from training_setup import model_config
from trl_setup import teach_the_format, train_two_grpo_steps

from cooper_lib.config import SpatialConfig
from cooper_lib.training.weights import build_model

PROMPTS = ["How many cones are there in the image?", "Is the yellow box to the left?"]


def test_spatial_config_reads_what_it_does_not_define_from_the_backbone_config():
    model = build_model(model_config())
    backbone = model.backbone.config
    assert model.config.get_text_config() is backbone.get_text_config()
    assert model.config._attn_implementation == backbone._attn_implementation
    assert model.config.num_classes == 7  # its own fields win
    assert "vocab_size" not in model.config.to_dict()  # neither saved nor compared
    assert SpatialConfig.from_dict(model.config.to_dict()) == model.config
    with pytest.raises(AttributeError, match="once a SpatialModel holds it"):
        SpatialConfig().get_text_config()
    with pytest.raises(AttributeError):
        model.config.no_such_setting  # noqa: B018


def test_trl_fused_log_probs_of_a_spatial_model_match_the_backbone_logits():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    torch.manual_seed(0)
    model = build_model(model_config()).eval()
    ids = model.processor.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
    with torch.no_grad():
        logits = model.backbone(**ids).logits.double()
    trl_utils.add_fused_lm_head(model, outputs=("log_probs",))
    with torch.no_grad():
        out = model(**ids, labels=labels, fused_lm_head=True)
    expected = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    mask = labels[:, 1:] != -100
    torch.testing.assert_close(out.log_probs.double()[mask], expected[mask], rtol=1e-4, atol=1e-4)
    assert model.generation_config is model.backbone.generation_config
    assert model.get_output_embeddings() is model.backbone.get_output_embeddings()


def test_trl_grpo_trainer_trains_a_spatial_model(tmp_path):
    """Text-only GRPO (COOPER's BAGEL-RE baseline) on a SpatialModel with the CPR parts, in TRL."""
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    torch.manual_seed(0)
    model = build_model(model_config())
    model.set_backbone_trainable(True)  # frozen after add_spatial_heads: GRPO trains the language model
    tokenizer = model.processor.tokenizer
    tokenizer.padding_side = "left"
    teach_the_format(model, tokenizer, PROMPTS)  # a random model never writes the tags
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = train_two_grpo_steps(model, tokenizer, PROMPTS, tmp_path)
    logs = [entry for entry in trainer.state.log_history if "rewards/format/mean" in entry]
    assert trainer.state.global_step == 2 and len(logs) == 2
    assert any(entry["rewards/format/mean"] > 0 for entry in logs)
    assert any(entry["grad_norm"] > 0 for entry in logs)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(n.startswith("backbone.") and "layers" in n for n in changed)
    assert not any(n.startswith(("heads.", "queries.")) for n in changed)  # no query block in text-only GRPO
