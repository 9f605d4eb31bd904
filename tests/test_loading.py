import pytest

from cooper_lib.loading import (
    TRAINABLE_NAME,
    load_backbone,
    load_trained_folder,
    looks_local,
    trained_folder_info,
)


def test_a_folder_without_trainable_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=TRAINABLE_NAME):
        trained_folder_info(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a model folder written by"):
        load_trained_folder(tmp_path)


def test_unknown_dtype_is_named():
    with pytest.raises(ValueError, match="dtype: expected one of .*, got 'float8'"):
        load_backbone("tiny:qwen2_5_vl", "float8")


def test_a_missing_local_backbone_never_reaches_the_hub(tmp_path, monkeypatch):
    assert looks_local(tmp_path / "x") and looks_local("./model") and looks_local("runs/a/final")
    assert not looks_local("Qwen/Qwen2-VL-2B-Instruct") and not looks_local("gpt2")
    for missing in (str(tmp_path / "nothing"), "./no-model", "runs/a/final", tmp_path / "nothing"):
        with pytest.raises(
            FileNotFoundError, match="name: no local folder or file at .*(nothing|no-model|final)"
        ):
            load_backbone(missing)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match="name: 'nobody-here/no-such-model' is no local folder, and the hub"
    ):
        load_backbone("nobody-here/no-such-model")
    with pytest.raises(TypeError, match="name: expected a hub id"):
        load_backbone(3)


def test_a_corrupt_trainable_json_names_the_file_and_line(tmp_path):
    (tmp_path / "trainable.json").write_text('{"backbone": "tiny:qwen2_vl",\n "dtype": ')
    with pytest.raises(ValueError, match=r"trainable\.json: not valid JSON at line 2"):
        trained_folder_info(tmp_path)
