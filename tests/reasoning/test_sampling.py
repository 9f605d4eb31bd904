import pytest
import torch

from cooper_lib.reasoning import SamplingConfig, TokenSampler


def test_greedy_picks_the_argmax():
    logits = torch.randn(3, 50)
    sampler = TokenSampler(SamplingConfig(), seeds=[0, 1, 2])
    assert sampler(logits, [0, 1, 2], [[1], [2], [3]]) == logits.argmax(-1).tolist()


def test_banned_tokens_are_never_chosen():
    logits = torch.zeros(2, 10)
    logits[:, 4] = 100.0
    sampler = TokenSampler(SamplingConfig(temperature=1.0), seeds=[0, 1], banned_ids=[4])
    for _ in range(20):
        assert 4 not in sampler(logits, [0, 1], [[], []])
    assert TokenSampler(SamplingConfig(), [0], banned_ids=[4])(logits[:1], [0], [[]]) != [4]


def test_each_row_draws_from_its_own_seed():
    logits = torch.randn(1, 100)
    draws = []
    for batch_rows in ([0], [2, 0, 1]):
        sampler = TokenSampler(SamplingConfig(temperature=1.0), seeds=[7, 8, 9])
        picks = [
            sampler(logits.expand(len(batch_rows), -1), batch_rows, [[]] * len(batch_rows)) for _ in range(5)
        ]
        draws.append([p[batch_rows.index(0)] for p in picks])
    assert draws[0] == draws[1]


def test_top_k_one_is_greedy_and_top_p_keeps_the_nucleus():
    logits = torch.tensor([[0.0, 5.0, 4.9, -3.0]])
    assert TokenSampler(SamplingConfig(1.0, top_k=1), [0])(logits, [0], [[]]) == [1]
    sampler = TokenSampler(SamplingConfig(1.0, top_p=0.6), [0])
    assert {sampler(logits, [0], [[]])[0] for _ in range(50)} <= {1, 2}


def test_logits_processors_see_each_rows_context():
    seen = []

    def processor(input_ids, scores):
        seen.append(input_ids.tolist())
        return scores

    TokenSampler(SamplingConfig(), [0, 0], [processor])(torch.randn(2, 5), [0, 1], [[3, 4], [5]])
    assert seen == [[[3, 4], [0, 5]]]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"temperature": -0.1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_k": -1}, "top_k")],
)
def test_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SamplingConfig(**kwargs)


def test_config_round_trips_and_names_unknown_keys():
    config = SamplingConfig(temperature=0.7, top_p=0.9, top_k=5, seed=3)
    assert SamplingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"SamplingConfig: unknown fields \['temp'\]; expected a subset of"):
        SamplingConfig.from_dict({"temp": 1.0})
