import copy

import pytest

from cooper_lib.training.judges import Reference
from cooper_lib.training.rewards import (
    accuracy_reward,
    cpr_reward,
    exploration_rewards,
    format_reward,
    is_answer_turn,
    is_tool_turn,
    used_tool,
)

DEPTH = "<think>the chair may be far</think><depth-estimation>Estimate the depth of the image and generate the depth map.</depth-estimation>"
SEG = "<think>count them</think>\n<segmentation>Segment the objects in the image with different colors.</segmentation>"
ANSWER_B = "<think>the map shows it</think><answer>The red one. \\boxed{B}</answer>"
ANSWER_A = "<think>guess</think><answer>\\boxed{A}</answer>"
CHOICE = Reference("B", "choice", choices=("the blue box", "the red sphere"))


def test_turn_shapes_follow_coopers_regexes():
    assert is_tool_turn(DEPTH) and is_tool_turn(SEG) and is_tool_turn("  " + DEPTH + "\n")
    assert not is_tool_turn(ANSWER_B)
    assert not is_tool_turn("<depth-estimation>no think first</depth-estimation>")
    assert not is_tool_turn(DEPTH + " trailing words")
    assert is_answer_turn(ANSWER_B) and not is_answer_turn(DEPTH)
    assert not is_answer_turn("<answer>\\boxed{B}</answer>")


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([ANSWER_B], 1.0),
        ([DEPTH, ANSWER_B], 1.0),
        ([DEPTH, SEG, ANSWER_B], 1.0),
        ([], 0.0),
        ([DEPTH], 0.0),  # ran out of turns after a tool call: never answered (upstream passed this)
        ([DEPTH, DEPTH], 0.0),
        (["<think>hmm</think> I do not know", ANSWER_B], 0.0),
        ([ANSWER_B, ANSWER_B], 0.0),  # an answer before the last turn
    ],
)
def test_format_reward(turns, expected):
    assert format_reward(turns) == expected


def test_accuracy_needs_a_final_answer_turn_and_a_correct_answer():
    assert accuracy_reward([DEPTH, ANSWER_B], CHOICE) == 1.0
    assert accuracy_reward([ANSWER_A], CHOICE) == 0.0
    assert accuracy_reward([DEPTH], CHOICE) == 0.0
    assert accuracy_reward(["\\boxed{B}"], CHOICE) == 0.0  # right letter, but not an answer turn


def test_accuracy_uses_the_given_judge():
    calls = []

    def judge(text, reference):
        calls.append((text, reference))
        return True

    assert accuracy_reward([ANSWER_A], CHOICE, judge) == 1.0
    assert calls == [("\\boxed{A}", CHOICE)]  # the answer tags' content, as upstream's judge sees


@pytest.mark.parametrize(
    ("last_turn", "expected"),
    [
        ("<answer>\\boxed{B}</answer>", 1.0),  # no <think>: format 0, accuracy still judged
        ("so the answer is <answer>\\boxed{B}</answer> done", 1.0),  # text around the answer
        ("<answer>\\boxed{A}</answer> or <answer>\\boxed{B}</answer>", 0.0),  # the first one
        ("<think>x</think>\\boxed{B}", 0.0),  # no answer tags at all
        (DEPTH, 0.0),
    ],
)
def test_accuracy_has_no_format_gate(last_turn, expected):
    # upstream (interleave_grpo.py:332-456) searches <answer>(.*?)</answer> in the last text and
    # judges its content; the format reward is a separate part
    assert accuracy_reward([last_turn], CHOICE) == expected
    assert format_reward([last_turn]) == 0.0


def test_a_tool_call_in_the_last_turn_earns_no_exploration():
    # upstream (interleave_grpo.py:515) skips the last piece: that call is never executed
    assert not used_tool([DEPTH])
    assert not used_tool([ANSWER_A, SEG])
    assert used_tool([SEG, DEPTH]) and used_tool([DEPTH, ANSWER_B])
    # a group of 4 on a positive question: only [SEG, ANSWER_B] made an executed call (1 < 3)
    out = cpr_reward(
        [[SEG, ANSWER_B], [DEPTH], [ANSWER_A, SEG], [ANSWER_B]], [CHOICE] * 4, ["positive"] * 4, ["q"] * 4
    )
    assert out.exploration == (0.2, 0.0, 0.0, 0.0)


def test_exploration_below_threshold_rewards_positive_tool_users():
    # group g: 2 of 8 rollouts used a tool (< 3) on a positive question -> +0.2 to those two
    used = [True, True] + [False] * 6
    out = exploration_rewards(used, ["positive"] * 8, ["g"] * 8)
    assert out == [0.2, 0.2] + [0.0] * 6


def test_exploration_above_threshold_penalises_negative_tool_users():
    used = [True] * 5 + [False] * 3
    out = exploration_rewards(used, ["negative"] * 8, ["g"] * 8)
    assert out == [-0.2] * 5 + [0.0] * 3


def test_exploration_zero_at_threshold_for_boundary_and_for_the_other_direction():
    at = [True] * 3 + [False] * 5
    assert exploration_rewards(at, ["positive"] * 8, ["g"] * 8) == [0.0] * 8
    assert exploration_rewards(at, ["negative"] * 8, ["g"] * 8) == [0.0] * 8
    few, many = [True] + [False] * 7, [True] * 6 + [False] * 2
    assert exploration_rewards(few, ["boundary"] * 8, ["g"] * 8) == [0.0] * 8
    assert exploration_rewards(many, ["boundary"] * 8, ["g"] * 8) == [0.0] * 8
    assert exploration_rewards(few, ["negative"] * 8, ["g"] * 8) == [0.0] * 8  # few users: no penalty
    assert exploration_rewards(many, ["positive"] * 8, ["g"] * 8) == [0.0] * 8  # many users: no bonus


def test_exploration_counts_each_group_separately():
    used = [True, False, False, False] + [True, True, True, True]
    out = exploration_rewards(
        used, ["positive"] * 4 + ["negative"] * 4, ["a"] * 4 + ["b"] * 4, threshold=2, bonus=0.5
    )
    assert out == [0.5, 0.0, 0.0, 0.0] + [-0.5] * 4


def test_exploration_validates_inputs():
    with pytest.raises(ValueError, match="flags"):
        exploration_rewards([True], ["sometimes"], ["g"])
    with pytest.raises(ValueError, match="one per rollout"):
        exploration_rewards([True, False], ["positive"], ["g", "g"])


def test_cpr_reward_combines_parts_with_weights_and_never_mutates_inputs():
    completions = [[DEPTH, ANSWER_B], [ANSWER_B], [ANSWER_A], [DEPTH]]
    refs = [CHOICE] * 4
    before = copy.deepcopy(completions)
    out = cpr_reward(completions, refs, ["positive"] * 4, [0] * 4, threshold=3, bonus=0.2)
    assert completions == before
    assert out.accuracy == (1.0, 1.0, 0.0, 0.0)
    assert out.format == (1.0, 1.0, 1.0, 0.0)
    # one rollout made an executed tool call (< 3) on a positive question; that first tool call
    # counts even though format was computed first (the upstream bug skipped it); [DEPTH]'s call
    # is in its last turn, never executed, so it earns nothing
    assert out.exploration == (0.2, 0.0, 0.0, 0.0)
    assert out.total == pytest.approx((2.2, 2.0, 1.0, 0.0))
    weighted = cpr_reward(
        completions, refs, ["positive"] * 4, [0] * 4, weights={"format": 0.5, "exploration": 0.0}
    )
    assert weighted.total == pytest.approx((1.5, 1.5, 0.5, 0.0))
    assert out.means()["total"] == pytest.approx(5.2 / 4)
    assert used_tool(completions[0]) and not used_tool(completions[1])


def test_cpr_reward_rejects_bad_inputs():
    with pytest.raises(ValueError, match="weights"):
        cpr_reward([[ANSWER_B]], [CHOICE], ["positive"], [0], weights={"style": 1.0})
    with pytest.raises(ValueError, match="references"):
        cpr_reward([[ANSWER_B]], [], ["positive"], [0])
    with pytest.raises(TypeError, match="completions"):
        cpr_reward(["a flat string"], [CHOICE], ["positive"], [0])


def test_normals_and_user_modalities_get_format_and_exploration_rewards():
    from cooper_lib.config import ModalitySpec, SpatialConfig
    from cooper_lib.data.turns import TurnFormat
    from cooper_lib.modalities import NormalsCodec, register_modality

    normals = "<think>which way do the walls face?</think><normal-estimation>Estimate.</normal-estimation>"
    assert format_reward([normals, ANSWER_B]) == 1.0 and used_tool([normals, ANSWER_B])
    register_modality("edges-reward-test", NormalsCodec, overwrite=True)
    edges = "<think>where are the borders?</think><edges-reward-test>Find edges.</edges-reward-test>"
    assert format_reward([edges, ANSWER_B]) == 1.0
    # a model's own tags (from its config) are what its rollouts are read with
    config = SpatialConfig(
        modalities=("depth", "albedo"), tags={"albedo": ModalitySpec("<alb>", "</alb>", "go")}
    )
    fmt = TurnFormat.from_config(config)
    albedo = "<think>colour without light?</think><alb>go</alb>"
    assert format_reward([albedo, ANSWER_B], fmt) == 1.0 and format_reward([albedo, ANSWER_B]) == 0.0
    rewards = cpr_reward(
        [[albedo, ANSWER_B], [ANSWER_B]],
        [CHOICE, CHOICE],
        ["positive", "positive"],
        [0, 0],
        turn_format=fmt,
    )
    assert rewards.format == (1.0, 1.0) and rewards.exploration == (0.2, 0.0)
