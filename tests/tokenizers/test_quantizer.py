import pytest
import torch

from cooper_lib.tokenizers import VectorQuantizer


def test_nearest_matches_brute_force():
    vq = VectorQuantizer(16, 4)
    z = torch.randn(100, 4)
    assert torch.equal(vq.nearest(z), torch.cdist(z, vq.codebook).argmin(-1))


def test_first_training_batch_initialises_the_codebook():
    vq = VectorQuantizer(8, 3, ema_decay=1.0, dead_code_threshold=0.0)  # decay 1: the update keeps the init
    z = torch.randn(50, 3) + 10
    vq(z)
    assert bool(vq.initialized)
    gaps = (vq.codebook[:, None] - z[None]).norm(dim=-1).min(-1).values
    assert gaps.max() < 0.05  # every code starts next to a batch vector


def test_ema_with_no_memory_moves_codes_to_their_cluster_means():
    vq = VectorQuantizer(2, 2, ema_decay=0.0, dead_code_threshold=0.0, eps=1e-12)
    vq.initialized.fill_(True)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0], [11.0, 12.0]])
    vq(z)
    assert torch.allclose(vq.codebook, torch.tensor([[0.5, 0.5], [10.0, 10.5]]), atol=1e-5)


def test_straight_through_gradients_and_codebook_loss():
    vq = VectorQuantizer(4, 3, mode="straight_through", commitment=0.25)
    z = torch.randn(20, 3, requires_grad=True)
    out = vq(z)
    (out.quantized * torch.arange(3.0)).sum().backward(retain_graph=True)
    assert torch.equal(z.grad, torch.arange(3.0).expand(20, 3))  # identity through the quantiser
    z.grad = None
    out.loss.backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert torch.allclose(out.loss, 1.25 * ((z - vq.lookup(out.codes)) ** 2).mean(), atol=1e-6)


def test_dead_codes_are_restarted_on_batch_vectors():
    vq = VectorQuantizer(8, 2, dead_code_threshold=1.0)
    vq.initialized.fill_(True)
    vq.usage.fill_(100.0)
    vq.usage[[2, 5]] = 0.0
    z = torch.randn(64, 2)
    out = vq(z)
    assert out.restarted == 2
    for code in (2, 5):
        assert (vq.codebook[code] - z).norm(dim=-1).min() < 1e-6
    assert (vq.usage >= 1.0).all()


def test_eval_mode_leaves_the_state_alone():
    vq = VectorQuantizer(8, 2).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(torch.randn(32, 2))
    assert out.restarted == 0
    assert all(torch.equal(before[k], v) for k, v in vq.state_dict().items())


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        VectorQuantizer(4, 2, mode="gumbel")
