"""LinearCrossEntropy (the nn.Module) against the float64 reference."""

import torch

from cooper_lib.ops import LinearCrossEntropy, linear_cross_entropy_reference


def test_module_matches_reference_values_and_gradients():
    hidden = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 9, (2, 6))
    class_weights = torch.rand(9, dtype=torch.float64) + 0.1
    options = {"label_smoothing": 0.1, "z_loss": 1e-3, "class_weights": class_weights, "shift": 1}
    module = LinearCrossEntropy(**options, chunk_size=5, return_accuracy=True)
    ours = module(hidden, weight, labels)
    ref = linear_cross_entropy_reference(hidden, weight, labels, **options, return_accuracy=True)
    torch.testing.assert_close(ours.loss, ref.loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.accuracy, ref.accuracy)
    grads = torch.autograd.grad(ours.loss, (hidden, weight))
    for g, rg in zip(grads, torch.autograd.grad(ref.loss, (hidden, weight)), strict=True):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-12)


def test_module_keeps_class_weights_as_a_buffer():
    module = LinearCrossEntropy(class_weights=torch.ones(4), label_smoothing=0.1)
    assert "class_weights" in dict(module.named_buffers())
    assert "class_weights" not in module.state_dict()  # an option, not a learned value
    assert module.to(torch.float64).class_weights.dtype == torch.float64
    assert "label_smoothing=0.1" in repr(module)
