from typing import Any

import pytest
import torch

from cooper_lib.modalities import (
    DecodedMap,
    DepthCodec,
    Modality,
    ModalityCodec,
    available_modalities,
    get_codec,
    get_modality,
    register_modality,
)
from cooper_lib.modalities import registry as registry_module


class _Albedo(ModalityCodec):
    """A user codec: a map in [0, 2] shown as gray."""

    name = "albedo"
    units = "1"
    value_range = (0.0, 2.0)

    def encode(self, x, mask=None):
        return (x / 2).unsqueeze(-3).expand(*x.shape[:-2], 3, *x.shape[-2:])

    def decode(self, img):
        value = img.mean(-3) * 2
        return DecodedMap(value, torch.ones_like(value, dtype=torch.bool))

    @property
    def config(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))


def test_builtins():
    assert {"depth", "segmentation", "instance", "normals"} <= set(available_modalities())
    assert isinstance(get_codec("depth", preset="nyu"), DepthCodec)
    assert get_codec("segmentation").num_classes == 150


def test_register_a_user_codec_class_and_instance(clean_registry):
    register_modality("albedo", _Albedo)
    codec = get_codec("albedo")
    x = torch.rand(2, 4, 4) * 2
    assert torch.allclose(codec.decode(codec.encode(x)).value, x)
    fixed = _Albedo()
    register_modality("albedo-fixed", fixed)
    assert get_codec("albedo-fixed") is fixed
    assert "albedo" in available_modalities()


def test_registry_errors(clean_registry):
    with pytest.raises(ValueError, match="name: modality 'depth' is already registered"):
        register_modality("depth", DepthCodec)
    register_modality("depth", lambda **kw: DepthCodec("log", **kw), overwrite=True)
    assert get_codec("depth").encoding == "log"
    with pytest.raises(ValueError, match="name: unknown modality 'sonar'"):
        get_codec("sonar")
    register_modality("fixed", _Albedo())
    with pytest.raises(TypeError, match="registered as a ready codec"):
        get_codec("fixed", scale=2)
    with pytest.raises(TypeError, match="factory_or_codec"):
        register_modality("bad", 42)
    register_modality("broken", lambda: "not a codec")
    with pytest.raises(TypeError, match="returned str, not a codec"):
        get_codec("broken")
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        register_modality("", _Albedo)


def test_codec_base_is_abstract():
    with pytest.raises(TypeError):
        ModalityCodec()


def test_builtin_modalities_carry_their_tags_kind_and_ignore_index():
    depth, seg, normals = (get_modality(n) for n in ("depth", "segmentation", "normals"))
    assert (depth.open_tag, depth.close_tag) == ("<depth-estimation>", "</depth-estimation>")
    assert seg.instruction == "Segment the objects in the image with different colors."
    assert (depth.kind, seg.kind, normals.kind) == ("float", "ids", "vectors")
    assert seg.ignore_index == 255 and depth.ignore_index is None
    assert depth.priority > seg.priority
    assert not get_modality("instance").has_tags


def test_codec_only_registration_wraps_a_base_modality(clean_registry):
    modality = register_modality("albedo", _Albedo)
    assert isinstance(modality, Modality) and get_modality("albedo") is modality
    assert modality.kind == "float" and not modality.has_tags
    with pytest.raises(TypeError, match="only with a name"):
        register_modality(Modality("x", _Albedo), _Albedo)
    with pytest.raises(ValueError, match="all three or none"):
        Modality("y", _Albedo, open_tag="<y>")


def test_class_attribute_defaults_stand_in_for_constructor_arguments():
    class Albedo(Modality):
        default_name = "albedo"
        default_codec = _Albedo
        default_tool = ("<albedo>", "</albedo>", "Estimate the albedo.")
        default_priority = 2

    modality = Albedo()
    assert (modality.name, modality.codec_factory, modality.priority) == ("albedo", _Albedo, 2)
    assert (modality.open_tag, modality.close_tag, modality.instruction) == Albedo.default_tool
    assert modality.display.colormap == "gray" and modality.metric_names == ("albedo/mae",)
    other = Albedo("albedo2", open_tag="<a>", close_tag="</a>", instruction="A.", priority=0)
    assert (other.name, other.open_tag, other.priority) == ("albedo2", "<a>", 0)
    depth = get_modality("depth")
    renamed = type(depth)("depth2")
    assert (renamed.name, renamed.open_tag, renamed.priority) == ("depth2", depth.open_tag, depth.priority)
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        Modality(codec_factory=_Albedo)


def test_modality_metrics_of_generated_maps():
    depth, seg, normals = (get_modality(n) for n in ("depth", "segmentation", "normals"))
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # 0: no depth, left out
    assert depth.map_metrics(gt * 1.5, gt, num_classes=1) == pytest.approx({"depth/abs_rel": 0.5})
    ids = torch.tensor([[[0, 1], [1, 255]]])
    assert seg.map_metrics(torch.tensor([[[0, 1], [0, 0]]]), ids, num_classes=2) == pytest.approx(
        {"segmentation/miou": (1 / 2 + 1 / 2) / 2}
    )
    up = torch.zeros(1, 3, 2, 2)
    up[:, 2] = 1.0
    side = torch.zeros(1, 3, 2, 2)
    side[:, 0] = 1.0
    assert normals.map_metrics(side, up, num_classes=1) == pytest.approx({"normals/angle": 90.0})


def test_dense_losses_mask_invalid_pixels():
    depth, seg = get_modality("depth"), get_modality("segmentation")
    raw = torch.randn(2, 1, 4, 4)
    target = torch.rand(2, 4, 4) + 0.5
    holed = target.clone()
    holed[:, 0] = torch.nan
    holed[0, 1, 1] = 0.0
    torch.testing.assert_close(depth.dense_loss(raw, holed), depth.dense_loss(raw[:, :, 1:], holed[:, 1:]))
    assert not torch.allclose(depth.dense_loss(raw, holed), depth.dense_loss(raw, target))
    assert bool(depth.blank_target(target).isnan().all())
    assert bool((seg.blank_target(torch.zeros(2, 2, dtype=torch.long)) == 255).all())
