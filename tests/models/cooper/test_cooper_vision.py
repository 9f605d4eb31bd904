import torch
from transformers import SiglipVisionModel

from cooper_lib.models.cooper import ViTConfig
from cooper_lib.models.cooper.vision import PackedSiglip, patchify

CFG = ViTConfig(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=4
)


def test_linear_patch_embedding_matches_transformers_conv_siglip():
    """BAGEL's layout (Linear over (row, col, channel) patches) reproduces stock SigLIP on a full-size image."""
    torch.manual_seed(0)
    stock = SiglipVisionModel(CFG.to_siglip(4)).eval()  # 16 x 16 images, 4 x 4 patches
    ours = PackedSiglip(CFG, 4).eval()
    state = stock.state_dict()
    conv = state.pop("embeddings.patch_embedding.weight")  # [hidden, 3, p, p]
    state["embeddings.patch_embedding.weight"] = conv.permute(0, 2, 3, 1).reshape(32, -1)
    state.pop("embeddings.position_ids", None)
    ours.vision_model.load_state_dict(state, strict=True)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        want = stock(pixel_values=images).last_hidden_state  # [2, 16, 32]
        patches = torch.cat([patchify(im, 4) for im in images])
        pos = torch.cat([ours.position_ids(16, 16)] * 2)
        got = ours(patches, pos, [16, 16])
    torch.testing.assert_close(got, want.reshape(32, 32), rtol=1e-5, atol=1e-5)


def test_packed_images_do_not_see_each_other():
    torch.manual_seed(0)
    vit = PackedSiglip(CFG, 8).eval()
    a, b = torch.rand(3, 8, 12), torch.rand(3, 16, 8)
    pa, pb = patchify(a, 4), patchify(b, 4)
    ids_a, ids_b = vit.position_ids(8, 12), vit.position_ids(16, 8)
    with torch.no_grad():
        both = vit(torch.cat([pa, pb]), torch.cat([ids_a, ids_b]), [len(pa), len(pb)])
        alone = vit(pa, ids_a, [len(pa)])
    torch.testing.assert_close(both[: len(pa)], alone, rtol=1e-5, atol=1e-5)
