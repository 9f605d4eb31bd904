import pytest
import torch

from cooper_lib.modalities._nearest import nearest_colour


@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
def test_matches_brute_force(chunk):
    img = torch.rand(2, 3, 7, 9)
    table = torch.rand(11, 3)
    index, distance = nearest_colour(img, table, chunk_pixels=chunk)
    pixels = img.movedim(1, -1).reshape(-1, 3)
    brute = torch.cdist(pixels, table)
    assert torch.equal(index.flatten(), brute.argmin(-1))
    assert torch.allclose(distance.flatten(), brute.min(-1).values, atol=1e-6)
    assert index.shape == distance.shape == (2, 7, 9)


def test_exact_colours_have_zero_distance():
    table = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    img = table[torch.tensor([[0, 1], [1, 0]])].movedim(-1, 0)
    index, distance = nearest_colour(img, table)
    assert index.tolist() == [[0, 1], [1, 0]]
    assert torch.equal(distance, torch.zeros(2, 2))


def test_uint8_images_give_the_same_answer_as_their_float_values():
    img = torch.randint(0, 256, (2, 3, 9, 11), dtype=torch.uint8)
    img[:, :, :4] = 7  # repeated colours share one search
    table = torch.rand(13, 3)
    index, distance = nearest_colour(img, table)
    ref_index, ref_distance = nearest_colour(img.float() / 255, table)
    assert torch.equal(index, ref_index)
    assert torch.allclose(distance, ref_distance, atol=1e-6)
    assert index.shape == (2, 9, 11)
