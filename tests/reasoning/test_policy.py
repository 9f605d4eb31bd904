import pytest

from cooper_lib.reasoning import AdaptivePolicy, PerceiveFirstPolicy, TextOnlyPolicy, TurnPlan, get_policy

TOOLS = ("depth", "segmentation")


def test_adaptive_allows_every_tool_every_turn():
    assert all(AdaptivePolicy().plan(t, TOOLS) == TurnPlan(tools=TOOLS) for t in range(3))


def test_text_only_allows_none():
    assert TextOnlyPolicy().plan(0, TOOLS) == TurnPlan()


def test_perceive_first_forces_its_order_then_answers():
    policy = PerceiveFirstPolicy()
    plans = [policy.plan(t, TOOLS) for t in range(3)]
    assert [p.forced_tool for p in plans] == ["depth", "segmentation", None]
    assert plans[2].tools == ()


def test_perceive_first_checks_heads_and_turns():
    PerceiveFirstPolicy().check(TOOLS, 3)
    with pytest.raises(ValueError, match="no head"):
        PerceiveFirstPolicy().check(("depth",), 3)
    with pytest.raises(ValueError, match="at least 3"):
        PerceiveFirstPolicy().check(TOOLS, 2)
    with pytest.raises(ValueError, match="distinct"):
        PerceiveFirstPolicy(("depth", "depth"))


def test_get_policy():
    assert get_policy("text_only").name == "text_only"
    policy = PerceiveFirstPolicy(("segmentation",))
    assert get_policy(policy) is policy
    with pytest.raises(ValueError, match="policy"):
        get_policy("greedy")
