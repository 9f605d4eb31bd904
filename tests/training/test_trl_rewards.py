import pytest
import torch
from trl_setup import teach_the_format, train_two_grpo_steps

from cooper_lib.training.judges import Reference
from cooper_lib.training.rewards import cpr_reward
from cooper_lib.training.trl_rewards import completion_turns, cpr_reward_funcs

TOOL = "<think>check the depth</think><depth-estimation>Estimate the depth.</depth-estimation>"
ANSWER_A = "<think>the chair is nearer</think><answer>A</answer>"
ANSWER_B = "<think>the lamp is nearer</think><answer>B</answer>"
ROLLOUTS = [[ANSWER_A], [TOOL, ANSWER_A], [ANSWER_B], ["no tags at all"], [TOOL, ANSWER_B], [TOOL]]
COLUMNS = {
    "answer": ["A"] * 3 + ["2"] * 3,
    "answer_type": ["choice"] * 3 + ["integer"] * 3,
    "choices": [["chair", "lamp"]] * 3 + [[]] * 3,
    "cpr": ["positive"] * 3 + ["negative"] * 3,
}


def _trl_completion(turns):
    """A conversational TRL completion: the assistant turns with the tool result between them."""
    messages = []
    for turn in turns:
        messages += [{"role": "assistant", "content": turn}, {"role": "tool", "content": "map"}]
    return messages[:-1]


@pytest.mark.parametrize("conversational", [False, True])
def test_parts_match_cpr_reward(conversational):
    prompts = ["Which is nearer?"] * 3 + ["How many?"] * 3
    completions = [_trl_completion(t) if conversational else "".join(t) for t in ROLLOUTS]
    if not conversational:  # one string is one turn: multi-turn rollouts need messages
        rollouts = [["".join(t)] for t in ROLLOUTS]
    else:
        rollouts = ROLLOUTS
    references = [
        Reference(a, t, choices=c)
        for a, t, c in zip(COLUMNS["answer"], COLUMNS["answer_type"], COLUMNS["choices"], strict=True)
    ]
    expected = cpr_reward(rollouts, references, COLUMNS["cpr"], prompts, threshold=2, bonus=0.5)
    funcs = cpr_reward_funcs(threshold=2, bonus=0.5)
    got = {f.__name__: f(prompts=prompts, completions=completions, **COLUMNS) for f in funcs}
    assert got == {
        "accuracy": list(expected.accuracy),
        "format": list(expected.format),
        "exploration": list(expected.exploration),
    }
    if conversational:  # the rule paid or charged someone: the test is not vacuous
        assert any(got["exploration"]) and any(got["accuracy"]) and any(got["format"])


def test_errors():
    accuracy, _, exploration = cpr_reward_funcs()
    with pytest.raises(ValueError, match="'answer'"):
        accuracy(prompts=["q"], completions=[ANSWER_A], answer_type=["choice"])
    with pytest.raises(ValueError, match="cpr"):
        exploration(prompts=["q"], completions=[ANSWER_A], cpr=["positive", "negative"])
    with pytest.raises(TypeError, match="completions"):
        completion_turns(3)


def test_grpo_through_trl(tmp_path):
    """COOPER's BAGEL-RE baseline in miniature: text-only GRPO with the CPR parts in TRL."""
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from cooper_lib.backbones.tiny.tokenizer import train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer([])  # TRL decodes without special tokens: tags stay plain text
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    prompts = ["How many cones are there in the image?", "Is the yellow box to the left?"]
    teach_the_format(
        model, tokenizer, prompts
    )  # a random model never writes the tags: every reward would be 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = train_two_grpo_steps(model, tokenizer, prompts, tmp_path)
    logs = [entry for entry in trainer.state.log_history if "rewards/format/mean" in entry]
    assert trainer.state.global_step == 2 and len(logs) == 2
    assert all(f"rewards/{name}/mean" in logs[0] for name in ("accuracy", "format", "exploration"))
    assert any(entry["rewards/format/mean"] > 0 for entry in logs)  # the CPR parts scored something
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    assert changed > 0
