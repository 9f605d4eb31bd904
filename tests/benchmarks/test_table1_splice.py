"""`benchmarks/table1_splice.py`: the depth maps each condition shows the reader."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "table1_splice.py"
spec = importlib.util.spec_from_file_location("table1_splice", SCRIPT)
splice = importlib.util.module_from_spec(spec)
spec.loader.exec_module(splice)


class _Maps:
    """A 4 x 4 scene whose true depth is 5 m everywhere, the asked object (instance 2) in the top-left 2 x 2."""

    def __init__(self):
        self.instance = torch.zeros(4, 4, dtype=torch.long)
        self.instance[:2, :2] = 2

    def shown(self, item, modality):
        return torch.full((4, 4), 5.0)

    def true_map(self, item, modality):
        return torch.full((4, 4), 5.0)

    def scene(self, item):
        return SimpleNamespace(instance=self.instance)


def test_each_condition_shows_its_splice_of_own_and_true_depth():
    maps, item = _Maps(), SimpleNamespace(extra={"objects": [2]})
    own = torch.full((2, 2), 1.0)  # the heads' output, coarser than the photograph
    asked = maps.instance == 2
    shown = {c: splice._override(c, maps, [item])("depth", 0, own) for c in splice.CONDITIONS}
    assert shown["own"] is None  # the reasoner's own drawing, untouched
    assert torch.equal(shown["own_smoothed"], torch.full((4, 4), 1.0))  # upsampled to the true map's size
    assert torch.equal(shown["true"], torch.full((4, 4), 5.0))
    assert torch.equal(shown["object_true"], torch.where(asked, 5.0, 1.0))
    assert torch.equal(shown["object_own"], torch.where(asked, 1.0, 5.0))
    assert torch.equal(shown["object_flat"], torch.full((4, 4), 1.0))  # one depth: flat already
    assert torch.allclose(shown["own_rescaled"], torch.full((4, 4), 5.0))  # its room put at the true scale
    # segmentation maps stay the model's own in every condition
    assert all(splice._override(c, maps, [item])("segmentation", 0, own) is None for c in splice.CONDITIONS)


def test_smoothing_interpolates_in_metres():
    maps, item = _Maps(), SimpleNamespace(extra={"objects": [2]})
    own = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    smooth = splice._override("own_smoothed", maps, [item])("depth", 0, own)
    assert smooth.shape == (4, 4)
    assert torch.allclose(smooth[0], torch.tensor([1.0, 1.5, 2.5, 3.0]))  # bilinear, not nearest


def test_a_flat_object_takes_the_median_of_its_own_pixels_and_leaves_the_rest():
    maps, item = _Maps(), SimpleNamespace(extra={"objects": [2]})
    own = torch.tensor(
        [[1.0, 2.0, 9.0, 9.0], [4.0, 3.0, 9.0, 9.0], [7.0, 7.0, 7.0, 7.0], [7.0, 7.0, 7.0, 7.0]]
    )
    flat = splice._override("object_flat", maps, [item])("depth", 0, own)
    asked = maps.instance == 2
    assert torch.equal(flat[asked], torch.full((4,), 2.0))  # torch's median of 1, 2, 3, 4: the lower middle
    assert torch.equal(flat[~asked], own[~asked])
    nowhere = SimpleNamespace(extra={"objects": [5]})  # an object the mask does not show
    assert torch.equal(splice._override("object_flat", maps, [nowhere])("depth", 0, own), own)


def test_rescaling_puts_the_room_at_the_true_scale_and_keeps_the_maps_own_shape():
    maps, item = _Maps(), SimpleNamespace(extra={"objects": [2]})
    # the room (no object) drawn at half the true 5 m, one pixel of it far off; the object at 1 m
    own = torch.full((4, 4), 2.5)
    own[:2, :2] = 1.0
    own[3, 3] = 9.0
    rescaled = splice._override("own_rescaled", maps, [item])("depth", 0, own)
    assert torch.allclose(rescaled, own * 2.0)  # the room's median ratio, not its mean: one factor for all
    maps.instance[:] = 2  # a map that shows no room pixel is left as drawn
    assert torch.equal(splice._override("own_rescaled", maps, [item])("depth", 0, own), own)
