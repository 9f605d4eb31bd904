import pytest
import torch

from cooper_lib.modalities import DepthCodec
from cooper_lib.tokenizers import VQConfig, VQTokenizer, train_vq_tokenizer

ABSREL_BOUND = 0.15  # measured about 0.09 with this recipe; a mean-depth predictor scores about 1.2


def procedural_depth(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Depth maps (metres) of simple rooms: a floor seen in perspective, a back wall, boxes and spheres."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    far = torch.full_like(xs, float("inf"))

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    maps = []
    for _ in range(n):
        wall, horizon = uniform(3.0, 6.0), uniform(-0.3, 0.1)
        depth = torch.minimum(
            torch.where(ys > horizon, 0.6 / (ys - horizon).clamp_min(1e-3), far), far.clamp(max=wall)
        )
        for _ in range(int(torch.randint(1, 4, (), generator=generator))):
            cx, cy, r, z = (
                uniform(-0.8, 0.8),
                uniform(-0.8, 0.8),
                uniform(0.15, 0.4),
                uniform(1.0, wall - 0.2),
            )
            if uniform(0, 1) < 0.5:  # sphere: closest at its centre
                d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (r * r)
                shape = torch.where(d2 < 1, z - r * (1 - d2).clamp_min(0).sqrt(), far)
            else:  # box facing the camera
                shape = torch.where(
                    ((xs - cx).abs() < r) & ((ys - cy).abs() < 0.8 * r), torch.full_like(xs, z), far
                )
            depth = torch.minimum(depth, shape)
        maps.append(depth)
    return torch.stack(maps)


@pytest.fixture
def one_thread():
    # The model is tiny: a single thread avoids oversubscription when test workers run in parallel.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _abs_rel(pred, target) -> float:
    return float(((pred.value - target).abs() / target)[pred.valid].mean())


def test_learns_to_reconstruct_procedural_depth(one_thread, tmp_path):
    g = torch.Generator().manual_seed(0)
    codec = DepthCodec("gray", min_depth=0.5, max_depth=6.5)
    train_depth, test_depth = procedural_depth(512, 32, g), procedural_depth(64, 32, g)
    tokenizer = VQTokenizer(
        VQConfig(image_size=32, downsample=4, base_channels=8, codebook_size=64, code_dim=16)
    )
    before = _abs_rel(codec.decode(tokenizer.decode(tokenizer.encode(codec.encode(test_depth)))), test_depth)

    result = train_vq_tokenizer(
        tokenizer,
        codec.encode(train_depth),
        steps=400,
        lr=2e-3,
        batch_size=16,
        generator=torch.Generator().manual_seed(1),
        checkpoint_dir=tmp_path,
        progress=False,
    )

    decoded = codec.decode(tokenizer.decode(tokenizer.encode(codec.encode(test_depth))))
    after = _abs_rel(decoded, test_depth)
    assert before > 0.5
    assert after < ABSREL_BOUND, f"AbsRel {after:.3f} (untrained {before:.3f})"
    assert decoded.valid.float().mean() > 0.95
    assert result.steps == 400 and len(result.losses) == 400
    assert sum(result.reconstruction_losses[-20:]) < 0.1 * sum(result.reconstruction_losses[:20])
    assert result.perplexities[-1] > 16  # codebook in use, not collapsed
    reloaded = VQTokenizer.from_pretrained(result.checkpoints[-1])
    sample = codec.encode(test_depth[:4])
    assert torch.equal(reloaded.encode(sample), tokenizer.encode(sample))


def _tiny() -> VQTokenizer:
    return VQTokenizer(VQConfig(image_size=8, downsample=2, base_channels=4, codebook_size=8, code_dim=4))


def test_iterables_checkpoints_and_early_end(tmp_path):
    batches = [torch.rand(4, 3, 8, 8) for _ in range(3)]
    result = train_vq_tokenizer(
        _tiny(), batches, steps=7, checkpoint_dir=tmp_path, checkpoint_every=3, progress=False
    )
    assert result.steps == 7  # a list is re-iterated
    assert [p.name for p in result.checkpoints] == ["step-000003", "step-000006", "final"]
    assert all((p / "tokenizer.safetensors").is_file() for p in result.checkpoints)

    with pytest.warns(UserWarning, match="ran out after 3 of 10 steps"):
        short = train_vq_tokenizer(_tiny(), iter(batches), steps=10, progress=False)
    assert short.steps == 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        train_vq_tokenizer(_tiny(), torch.rand(4, 3, 8, 8), steps=0)
    with pytest.raises(ValueError, match="checkpoint_every: needs checkpoint_dir"):
        train_vq_tokenizer(_tiny(), torch.rand(4, 3, 8, 8), steps=2, checkpoint_every=1)
    with pytest.raises(ValueError, match=r"images_or_iterable: expected a \(N, C, H, W\) tensor"):
        train_vq_tokenizer(_tiny(), torch.rand(3, 8, 8), steps=2, progress=False)


def test_non_finite_batches_and_losses_stop_training(tmp_path):
    batches = [torch.rand(4, 3, 8, 8) for _ in range(3)]
    batches[2][0, 0, 0, 0] = float("nan")
    tokenizer = _tiny()
    with pytest.raises(ValueError, match="the batch of step 3 holds NaN or inf"):
        train_vq_tokenizer(tokenizer, batches, steps=4, progress=False)
    assert all(torch.isfinite(p).all() for p in tokenizer.parameters())

    tokenizer = _tiny()
    render = tokenizer._render
    calls = []

    def poisoned(quantized):  # the decoder diverges on the third step
        calls.append(1)
        out = render(quantized)
        return out * float("inf") if len(calls) == 3 else out

    tokenizer._render = poisoned
    with pytest.raises(
        FloatingPointError, match=r"loss: expected a finite value, got (nan|inf) at step 3 \(reconstruction"
    ):
        train_vq_tokenizer(tokenizer, batches[:2], steps=4, checkpoint_dir=tmp_path, progress=False)
    assert all(torch.isfinite(p).all() for p in tokenizer.parameters())
    assert not (tmp_path / "final").exists()
