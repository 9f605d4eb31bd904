import pytest
import torch

from cooper_lib.models.cooper import (
    CooperModel,
    Image,
    Latent,
    SequenceBuilder,
    Text,
    TextContext,
    generate_text,
    preset,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CooperModel(preset("tiny")).eval()


def _context():
    g = torch.Generator().manual_seed(0)
    return [
        Text((1, 5, 6, 2)),
        Image(torch.rand(3, 16, 16, generator=g) * 2 - 1),
        Latent(torch.randn(16, 4, 4, generator=g)),
        Text((1, 7, 8)),
    ]


def test_cached_greedy_decoding_matches_full_recomputation(model):
    out = generate_text(model, _context(), 6)
    assert len(out) == 6 or out[-1] == model.config.eos_token_id
    cfg = model.config
    for i in range(len(out)):
        seq = SequenceBuilder(cfg).add(_context()).text([cfg.bos_token_id, *out[:i]]).build()
        with torch.no_grad():
            logits = model.text_logits(model(seq)[-1])
        assert int(logits.argmax()) == out[i]


def test_sampling_is_reproducible_and_checked(model):
    a = generate_text(model, _context(), 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = generate_text(model, _context(), 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert a == b
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_text(model, _context(), 0)
    with pytest.raises(ValueError, match="temperature"):
        generate_text(model, _context(), 2, temperature=-1.0)
    with pytest.raises(TypeError, match="items: expected Text, Image or Latent"):
        generate_text(model, ["hello"], 2)


def test_an_extended_context_gives_the_logits_of_the_whole_row(model):
    """Items added to a cached context in three steps (text, an image, a latent, text, single
    tokens) give the logits a forward pass over the whole packed row gives, in float64."""
    model64 = CooperModel(preset("tiny")).double().eval()
    model64.load_state_dict(model.state_dict())
    ctx = TextContext(model64).extend(_context()[:2]).extend(_context()[2:3])
    ctx.extend([_context()[3], Image(-_context()[1].pixels.double())])
    logits = ctx.step(9)
    cfg = model.config
    whole = _context() + [Image(-_context()[1].pixels), Text((9,))]
    seq = SequenceBuilder(cfg).add(whole).build()
    with torch.no_grad():
        want = model64.text_logits(model64(seq)[-1])
    assert ctx.length == seq.length and ctx.position == int(seq.positions[-1]) + 1
    torch.testing.assert_close(logits, want.float(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="extend it"):
        TextContext(model).generate(3)
    with pytest.raises(ValueError, match="start_at"):
        SequenceBuilder(cfg).text([1]).start_at(3)
