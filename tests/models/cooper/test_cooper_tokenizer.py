import pytest
import torch

from cooper_lib.models.cooper import (
    CharTokenizer,
    CooperModel,
    load_tokenizer,
    preset,
    read_weights,
    save_tokenizer,
)


def test_char_tokenizer_round_trips_printable_text_and_leaves_specials_out():
    tok = CharTokenizer()
    ids = tok.encode("<think>a b</think>é")
    assert all(32 <= i < 127 for i in ids) and ids[-1] == ord("?")
    assert tok.decode([1, *tok.encode("ok"), 2]) == "ok"


def test_a_folder_records_its_tokenizer(tmp_path):
    save_tokenizer(CharTokenizer(), tmp_path)
    assert isinstance(load_tokenizer(tmp_path), CharTokenizer) and isinstance(
        load_tokenizer("tiny"), CharTokenizer
    )
    with pytest.raises(ValueError, match="expected 'tiny' or a model folder"):
        load_tokenizer("bagel-7b-mot")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        load_tokenizer(tmp_path / "..")
    with pytest.raises(TypeError, match="tokenizer"):
        save_tokenizer(object(), tmp_path)


def test_save_pretrained_takes_replacement_weights_and_read_weights_reads_only_those(tmp_path):
    torch.manual_seed(0)
    model = CooperModel(preset("tiny"))
    new = {"llm2vae.weight": torch.randn_like(model.llm2vae.weight)}
    model.save_pretrained(tmp_path, state=new)
    read = read_weights(tmp_path, ["llm2vae.weight", "vae.decoder.conv_in.weight"])
    assert torch.equal(read["llm2vae.weight"], new["llm2vae.weight"])
    assert torch.equal(read["vae.decoder.conv_in.weight"], model.vae.decoder.conv_in.weight)
    assert not torch.equal(model.llm2vae.weight, new["llm2vae.weight"])  # the live model is untouched
    with pytest.raises(ValueError, match="no tensor 'nope'"):
        read_weights(tmp_path, ["nope"])
    with pytest.raises(ValueError, match="not weights of the model"):
        model.save_pretrained(tmp_path / "b", state={"nope": torch.zeros(1)})
