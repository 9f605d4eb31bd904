import pytest

from cooper_lib.tokenizers import PatchTokenizer, VQTokenizer, build_tokenizer, load_tokenizer


def test_build_by_kind():
    assert isinstance(build_tokenizer("patch", image_size=32, patch_size=8), PatchTokenizer)
    vq = build_tokenizer("vq", image_size=32, downsample=8, codebook_size=16)
    assert isinstance(vq, VQTokenizer) and vq.grid == (4, 4)
    with pytest.raises(ValueError, match="kind: expected one of"):
        build_tokenizer("fsq")


def test_load_dispatches_on_the_saved_type(tmp_path):
    PatchTokenizer(image_size=8, patch_size=2).save_pretrained(tmp_path / "patch")
    build_tokenizer(
        "vq", image_size=8, downsample=2, base_channels=4, codebook_size=4, code_dim=2
    ).save_pretrained(tmp_path / "vq")
    assert isinstance(load_tokenizer(tmp_path / "patch"), PatchTokenizer)
    assert isinstance(load_tokenizer(tmp_path / "vq"), VQTokenizer)
    with pytest.raises(ValueError, match="autoencoder: a VQ tokenizer takes no autoencoder"):
        load_tokenizer(tmp_path / "vq", autoencoder=object())
    with pytest.raises(FileNotFoundError, match="directory: no tokenizer_config.json"):
        load_tokenizer(tmp_path)
