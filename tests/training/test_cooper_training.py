import pytest
import torch
import torch.nn.functional as F
from cooper_tiny import CharTokenizer, scene, tiny_model

from cooper_lib.models.cooper import NO_DROPOUT, Image, Latent, Stage1Sample
from cooper_lib.models.cooper.mot import MoTDecoderLayer
from cooper_lib.reasoning.cooper import CooperReasoner, fit_pixels, framed_text
from cooper_lib.training.cooper import (
    fsdp_auto_wrap_policy,
    grpo_step,
    pack_dialogues,
    rollout_logprobs,
    sft_loss,
    sft_step,
    stage1_step,
)
from cooper_lib.training.judges import Reference
from cooper_lib.training.rewards import cpr_reward

TOK = CharTokenizer()


def _dialogue(model, with_map: bool):
    """A COOPER SFT sample: prompt, a tool-call turn, the map (learnt) and its ViT image, the answer."""
    image = scene(0, (32, 32))
    vae, vit = fit_pixels(image, 16, 64), fit_pixels(image, 4, 64)
    enc = model.vae.encode(vae[None], sample=False)[0].detach()
    target = model.vae.encode(-vae[None], sample=False)[0].detach()
    items = [
        (framed_text(model, TOK, "sys"), False),
        (Latent(enc), False),
        (Image(vit), False),
        (framed_text(model, TOK, "Which is closer?"), False),
        (framed_text(model, TOK, "<think>a</think><depth-estimation>d</depth-estimation>"), True),
    ]
    if with_map:
        items.append((Latent(target), True))
    items += [(Image(-vit), False), (framed_text(model, TOK, "Here."), False)]
    items.append((framed_text(model, TOK, "<answer>\\boxed{A}</answer>"), True))
    return items


def test_sft_labels_are_the_flagged_texts_shifted_by_one():
    model = tiny_model()
    dialogue = _dialogue(model, with_map=False)
    seq, mask = pack_dialogues(model, [dialogue])
    flagged = [item for item, flag in dialogue if flag]
    assert int(mask.sum()) == sum(len(item.ids) - 1 for item in flagged)
    hidden = model(seq)
    logits = model.text_logits(hidden[seq.text_index])  # [N_text, V]
    places = torch.nonzero(mask).flatten()
    want = F.cross_entropy(logits[places - 1], seq.text_ids[places])
    torch.testing.assert_close(sft_loss(model, [dialogue]), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Image"):
        pack_dialogues(model, [[(Image(torch.zeros(3, 8, 8)), True)]])


def test_sft_step_learns_text_and_map_of_an_interleaved_dialogue():
    model = tiny_model().train()
    dialogue = _dialogue(model, with_map=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = [sft_step(model, opt, [dialogue], generator=g) for _ in range(12)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3


def test_stage1_step_runs_with_a_finite_loss():
    model = tiny_model().train()
    g = torch.Generator().manual_seed(0)
    sample = Stage1Sample(
        torch.rand(3, 16, 16, generator=g) * 2 - 1,
        torch.rand(3, 32, 32, generator=g) * 2 - 1,
        torch.rand(3, 32, 32, generator=g) * 2 - 1,
        (5, 6, 7),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.llm2vae.weight.detach().clone()
    loss = stage1_step(model, opt, [sample], dropout=NO_DROPOUT, generator=g)
    assert torch.isfinite(torch.tensor(loss)) and not torch.equal(before, model.llm2vae.weight)


def test_grpo_step_on_reasoner_rollouts_with_the_cpr_reward_raises_the_rewarded_rollout():
    model = tiny_model()
    reasoner = CooperReasoner(
        model,
        TOK,
        policy="text_only",
        max_turns=1,
        max_new_tokens_per_turn=6,
        temperature=1.0,
        system_prompt=False,
    )
    traces = reasoner.run_batch([scene(3)] * 4, ["Which is closer?"] * 4, seeds=[0, 1, 2, 3])
    assert len({tuple(t.steps[0].token_ids) for t in traces}) > 1  # sampled, not greedy
    cpr = cpr_reward(
        [t.turns for t in traces],
        [Reference("A", "choice", choices=("left", "right"))] * 4,
        ["boundary"] * 4,
        [0] * 4,
    )
    assert cpr.total == (0.0,) * 4  # the untrained model earns nothing: advantages would all be 0
    before, mask = rollout_logprobs(model, traces)
    assert mask.sum(dim=1).tolist() == [len(t.steps[0].token_ids) for t in traces]  # sampled tokens only
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = grpo_step(model, opt, traces, [1.0, 0.0, 0.0, 0.0], group_size=4)
    assert torch.isfinite(out.loss)
    with torch.no_grad():
        after, _ = rollout_logprobs(model, traces)
    mean = lambda x: (x * mask).sum(1) / mask.sum(1)  # noqa: E731
    gain = mean(after) - mean(before)
    assert gain[0] > 0 and gain[0] > gain[1:].max()


def test_fsdp_policy_wraps_one_unit_per_decoder_layer():
    model = tiny_model()
    policy = fsdp_auto_wrap_policy()
    wrapped = [m for m in model.modules() if policy(module=m, recurse=False, nonwrapped_numel=0)]
    assert wrapped == list(model.language_model.model.layers)
    assert all(isinstance(m, MoTDecoderLayer) for m in wrapped)
