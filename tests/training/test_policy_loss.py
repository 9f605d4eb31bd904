import pytest
import torch

from cooper_lib.training.policy_loss import clipped_policy_loss, group_advantages, token_logprobs


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(rewards, group_size=4, eps=1e-4)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # unbiased, as TRL and COOPER
    expected = (torch.tensor([1.0, 0.0, 0.0, 1.0]) - 0.5) / (std + 1e-4)
    torch.testing.assert_close(adv[:4], expected)
    assert torch.equal(adv[4:], torch.zeros(4))  # identical rewards: no signal, no division by zero
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(rewards, group_size=3)


def test_token_logprobs_are_shifted_by_one():
    torch.manual_seed(0)
    b, t, h, v = 2, 6, 8, 11
    hidden = torch.randn(b, t, h, dtype=torch.float64)
    weight = torch.randn(v, h, dtype=torch.float64)
    ids = torch.randint(0, v, (b, t))
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[:, 3:] = True
    mask[1, 5] = False
    got = token_logprobs(hidden, weight, ids, mask)
    logp = torch.log_softmax(hidden @ weight.T, dim=-1)
    expected = torch.zeros(b, t, dtype=torch.float64)
    for i in range(b):
        for j in range(1, t):
            if mask[i, j]:
                expected[i, j] = logp[i, j - 1, ids[i, j]]  # hidden at j - 1 predicts token j
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)
    unshifted = logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask  # COOPER's upstream bug
    assert not torch.allclose(got.double(), unshifted)


def test_token_logprobs_rejects_position_zero_and_shape_mismatch():
    hidden, weight, ids = torch.randn(1, 3, 4), torch.randn(5, 4), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="position 0"):
        token_logprobs(hidden, weight, ids, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected"):
        token_logprobs(hidden, weight, ids[:, :2], torch.zeros(1, 2, dtype=torch.bool))


def test_token_logprobs_gradient_matches_autograd_of_log_softmax():
    torch.manual_seed(1)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    weight = torch.randn(7, 4)
    ids = torch.randint(0, 7, (1, 5))
    mask = torch.tensor([[False, False, True, True, True]])
    token_logprobs(hidden, weight, ids, mask).sum().backward()
    reference = hidden.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(reference @ weight.T, dim=-1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    (logp * mask[:, 1:]).sum().backward()
    torch.testing.assert_close(hidden.grad, reference.grad)


def test_clipped_loss_at_ratio_one_is_minus_mean_advantage_and_its_gradient():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0], [0.0, -0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[False, True, True, False], [False, True, False, False]])
    adv = torch.tensor([1.0, -2.0])
    out = clipped_policy_loss(logp, logp.detach(), adv, mask)
    assert out.loss.item() == pytest.approx(-(1.0 + -2.0) / 2)
    assert out.clip_fraction.item() == 0.0 and out.ratio_mean.item() == pytest.approx(1.0)
    out.loss.backward()
    # d/dlogp of -rho * A averaged per rollout (rollout 0 has 2 tokens, rollout 1 has 1), then over 2 rollouts
    expected = torch.tensor([[0.0, -0.25, -0.25, 0.0], [0.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(logp.grad, expected)


def test_clipping_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(2, 2)
    mask = torch.tensor([[False, True], [False, True]])
    logp = torch.tensor([[0.0, 0.5], [0.0, -0.5]], requires_grad=True)  # ratio e^0.5 = 1.65, e^-0.5 = 0.61
    out = clipped_policy_loss(logp, old, torch.tensor([1.0, -1.0]), mask, clip_eps=0.2)
    out.loss.backward()
    # positive advantage above 1 + eps and negative advantage below 1 - eps are both clipped
    assert torch.equal(logp.grad, torch.zeros(2, 2))
    assert out.clip_fraction.item() == 1.0
    assert out.loss.item() == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0) / 2)


def test_kl_term_is_zero_at_the_reference_and_positive_away_from_it():
    logp = torch.tensor([[0.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[False, True]])
    zero = clipped_policy_loss(
        logp, logp.detach(), torch.zeros(1), mask, ref_logprobs=logp.detach(), kl_beta=0.1
    )
    assert zero.kl.item() == 0.0 and zero.loss.item() == 0.0
    away = clipped_policy_loss(
        logp, logp.detach(), torch.zeros(1), mask, ref_logprobs=torch.tensor([[0.0, -0.5]]), kl_beta=0.1
    )
    delta = 0.5
    assert away.kl.item() == pytest.approx(torch.exp(torch.tensor(delta)).item() - delta - 1)
    assert away.loss.item() == pytest.approx(0.1 * away.kl.item())
    with pytest.raises(ValueError, match="ref_logprobs"):
        clipped_policy_loss(logp, logp.detach(), torch.zeros(1), mask, kl_beta=0.1)
