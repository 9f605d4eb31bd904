import pytest
import torch
from torch import nn

from cooper_lib.training.ema import EMA


def test_ema_update_applied_and_state():
    model = nn.Linear(2, 2)
    model.bias.requires_grad_(False)
    ema = EMA(model, decay=0.75)
    assert set(ema.shadow) == {"weight"}  # frozen parameters are not shadowed
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update()
    torch.testing.assert_close(ema.shadow["weight"], start + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    with ema.applied():
        torch.testing.assert_close(model.weight.detach(), start + 1.0)
    torch.testing.assert_close(model.weight.detach(), start + 4.0)
    other = EMA(model, decay=0.75)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.shadow["weight"], start + 1.0)
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({})
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)
