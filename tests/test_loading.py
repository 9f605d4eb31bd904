import pytest

from cooper_lib.loading import TRAINABLE_NAME, load_backbone, load_trained_folder, trained_folder_info


def test_a_folder_without_trainable_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=TRAINABLE_NAME):
        trained_folder_info(tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a model folder written by"):
        load_trained_folder(tmp_path)


def test_unknown_dtype_is_named():
    with pytest.raises(ValueError, match="dtype: expected one of .*, got 'float8'"):
        load_backbone("tiny:qwen2_5_vl", "float8")
