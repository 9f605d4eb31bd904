"""patch_linear_cross_entropy on the tiny Qwen2-VL and LLaVA backbones, alone and in a plain Trainer.

The reference is the model's own transformers loss (full logits, ``F.cross_entropy``); the patched
model must give the same loss and gradients without ever making a ``[tokens, V]`` tensor.
"""

import copy

import pytest
import torch
from helpers import images
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Trainer, TrainingArguments

from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.ops import patch_linear_cross_entropy, unpatch_linear_cross_entropy

FAMILIES = ["qwen2_vl", "llava"]
VOCAB = 4096  # larger than the tiny tokenizer's 512 so that the logits dominate a step's memory
CHUNK = 8
_IMAGE_TEXT = {"qwen2_vl": "<|vision_start|><|image_pad|><|vision_end|>", "llava": "<image>"}


def _batch(family: str, processor, model) -> dict:
    texts = [
        _IMAGE_TEXT[family] + "what is here? a red cube on the left",
        _IMAGE_TEXT[family] + "two spheres",
    ]
    batch = dict(processor(text=texts, images=images(2), return_tensors="pt", padding=True))
    labels = batch["input_ids"].clone()
    image_token = model.config.image_token_id if family == "qwen2_vl" else model.config.image_token_index
    labels[(batch["attention_mask"] == 0) | (labels == image_token)] = -100
    batch["labels"] = labels
    return batch


class _Tensors(TorchDispatchMode):
    """Tracks tensors made inside the region: the most rows of any ``[..., V]`` one, and the peak
    bytes of live storages created in the region (a tracking allocator at the dispatcher)."""

    def __init__(self, n_vocab: int, model: torch.nn.Module) -> None:
        super().__init__()
        self.n_vocab, self.most_rows, self.live, self.peak = n_vocab, 0, {}, 0
        self.old = {StorageWeakRef(p.untyped_storage()).cdata for p in model.parameters()}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        new = False
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            ref = StorageWeakRef(t.untyped_storage())
            if ref.cdata in self.live or ref.cdata in self.old:
                continue  # a view, or a result written into an existing tensor
            self.live[ref.cdata] = (ref, t.untyped_storage().nbytes())
            new = True
            if t.dim() >= 2 and t.shape[-1] == self.n_vocab:
                self.most_rows = max(self.most_rows, t.numel() // self.n_vocab)
        if new:
            self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
            self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


@pytest.fixture(scope="module", params=FAMILIES)
def tiny(request):
    model, processor = build_tiny_backbone(request.param, vocab_size=VOCAB)
    return request.param, model, _batch(request.param, processor, model)


def _step(model, batch) -> tuple[torch.Tensor, list[torch.Tensor], _Tensors]:
    model.zero_grad()
    with _Tensors(VOCAB, model) as seen:
        out = model(**batch)
        out.loss.backward()
    return out, [p.grad.clone() for p in model.parameters() if p.grad is not None], seen


def test_patched_loss_and_gradients_match_the_model_without_logits(tiny):
    family, model, batch = tiny
    model.train()
    ref_out, ref_grads, ref_seen = _step(model, batch)
    patch_linear_cross_entropy(model, chunk_size=CHUNK, backend="torch")
    try:
        out, grads, seen = _step(model, batch)
        model.eval()
        with torch.no_grad():
            eval_out = model(**batch)
    finally:
        unpatch_linear_cross_entropy(model)
    tokens = batch["input_ids"].numel()
    assert out.logits is None and eval_out.logits.shape == (*batch["input_ids"].shape, VOCAB)
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eval_out.loss, ref_out.loss, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(ref_grads)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, rtol=1e-4, atol=1e-6)
    assert ref_seen.most_rows >= tokens  # the plain model makes the [B, T, V] logits ...
    assert seen.most_rows <= CHUNK  # ... the patched one never more than a chunk of rows
    saved = ref_seen.peak - seen.peak
    print(
        f"{family}: peak of tensors made in a step {ref_seen.peak / 2**20:.2f} -> {seen.peak / 2**20:.2f} MiB"
    )
    assert saved >= tokens * VOCAB * 4  # at least one fp32 copy of the logits saved


def test_a_bf16_model_gets_the_vocabulary_sweep(tiny):
    # a model loaded in bf16 (the usual GPU fine-tune): the default sweep makes no [..., V] tensor
    # and no fp32 copy of the head's gradient; the loss is the model's own at bf16 precision
    family, model, batch = tiny
    model = copy.deepcopy(model).to(torch.bfloat16).train()
    batch = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    ref_out, _, _ = _step(model, batch)
    head = model.get_output_embeddings().weight
    patch_linear_cross_entropy(model, block_size=512, backend="torch")
    try:
        out, _, seen = _step(model, batch)
    finally:
        unpatch_linear_cross_entropy(model)
    torch.testing.assert_close(out.loss.float(), ref_out.loss.float(), rtol=3e-2, atol=1e-3)
    assert head.grad.dtype == torch.bfloat16 and head.grad.abs().sum() > 0
    assert seen.most_rows == 0  # no tensor as wide as the vocabulary, not even a chunk of rows


def test_plain_trainer_trains_the_patched_model(tiny, tmp_path):
    family, model, batch = tiny
    patch_linear_cross_entropy(model, chunk_size=CHUNK)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, learning_rate=3e-3, logging_steps=1, per_device_train_batch_size=1,
        report_to=[], save_strategy="no", use_cpu=True, remove_unused_columns=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=[batch] * 6, data_collator=lambda items: items[0])
    try:
        with _Tensors(VOCAB, model) as seen:
            trainer.train()
    finally:
        unpatch_linear_cross_entropy(model)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert seen.most_rows <= CHUNK  # the Trainer's steps never made the logits


def test_patch_refuses_what_it_cannot_do(tiny):
    _, model, _ = tiny
    with pytest.raises(TypeError, match="get_output_embeddings"):
        patch_linear_cross_entropy(torch.nn.Linear(2, 2))
    patch_linear_cross_entropy(model)
    try:
        with pytest.raises(ValueError, match="already patched"):
            patch_linear_cross_entropy(model)
    finally:
        unpatch_linear_cross_entropy(model)
    with pytest.raises(ValueError, match="not patched"):
        unpatch_linear_cross_entropy(model)
    model.config.get_text_config().logit_scale = 0.5
    try:
        with pytest.raises(ValueError, match="logit_scale"):
            patch_linear_cross_entropy(model)
    finally:
        del model.config.get_text_config().logit_scale
