import pytest
import torch
from torch import nn

from cooper_lib.training.ema import EMA


def test_ema_update_applied_and_state():
    model = nn.Linear(2, 2)
    model.bias.requires_grad_(False)
    ema = EMA(model, decay=0.75, warmup=False)
    assert set(ema.shadow) == {"weight"}  # frozen parameters are not shadowed
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], start + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), start + 1.0)
    torch.testing.assert_close(model.weight.detach(), start + 4.0)
    other = EMA(model, decay=0.75, warmup=False)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.shadow["weight"], start + 1.0)
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({})
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_warmup_ramps_the_decay_and_is_restored():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.995)
    assert ema.current_decay() == pytest.approx(2 / 11)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], start + 9 / 11)
    for _ in range(99):
        ema.update()
    assert ema.current_decay() == pytest.approx(102 / 111)
    other = EMA(model, decay=0.995)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 100
    ema.updates = 5000
    assert ema.current_decay() == 0.995


def test_short_run_ema_moves_away_from_the_initial_weights():
    """100 steps of plain SGD towards a target: the warmed-up EMA ends near the weights, the
    uncorrected 0.995 average stays mostly at the start (the pilot's symptom)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 4, bias=False)
    start = model.weight.detach().clone()
    target = torch.randn(4, 4)
    warm, plain = EMA(model, 0.995), EMA(model, 0.995, warmup=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        ((model.weight - target) ** 2).sum().backward()
        optimizer.step()
        warm.update()
        plain.update()
    travelled = (model.weight.detach() - start).norm()

    def share(ema):
        return float((ema.shadow["weight"] - start).norm() / travelled)

    assert share(warm) > 0.8 and share(plain) < 0.45
