import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cooper_lib.eval.benchmarks.nyu import NYUv2Benchmark, depth_model, depth_run_metrics, load_nyu_v2


def _depth(value):
    depth = np.full((480, 640), value, dtype=np.float32)
    depth[0, 0] = 0.0  # missing measurement: outside the crop anyway
    return depth


def _write_mat(path, depths):
    h5py = pytest.importorskip("h5py")
    n = len(depths)
    rgb = np.zeros((n, 480, 640, 3), dtype=np.uint8)
    rgb[:, :, :, 0] = np.arange(n, dtype=np.uint8)[:, None, None] * 50
    rgb[:, 10, 20] = (1, 2, 3)
    with h5py.File(path, "w") as f:  # MATLAB v7.3 stores arrays column-major: (N, C, W, H)
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = np.stack(depths).transpose(0, 2, 1)
        f["labels"] = np.zeros((n, 640, 480), dtype=np.uint16)
    return path


def test_loads_the_labelled_mat_file_transposing_to_480_by_640(tmp_path):
    mat = _write_mat(tmp_path / "nyu_depth_v2_labeled.mat", [_depth(2.0), _depth(3.0), _depth(4.0)])
    bench = load_nyu_v2(mat, indices=[2, 0])
    assert isinstance(bench, NYUv2Benchmark) and [item.id for item in bench] == ["0002", "0000"]
    image = bench[1].load_image()
    assert image.size == (640, 480) and image.getpixel((20, 10)) == (1, 2, 3)
    assert bench[0].load_image().getpixel((5, 5)) == (100, 0, 0)
    target = bench[0].target()
    assert target.shape == (480, 640) and float(target[100, 100]) == 4.0 and float(target[0, 0]) == 0.0
    assert bench.meta["mode"] == "scale_shift" and bench.meta["space"] == "depth"


def test_scores_predictions_with_the_protocol_and_averages_images(tmp_path):
    mat = _write_mat(tmp_path / "nyu.mat", [_depth(2.0), _depth(4.0)])
    bench = load_nyu_v2(mat, mode="none")
    perfect = bench.score(bench[0], torch.full((240, 320), 2.0))  # resized to the gt grid
    off = bench.score(bench[1], torch.full((480, 640), 5.0))  # ratio 1.25, not < 1.25: delta1 0
    assert perfect["abs_rel"] == 0.0 and perfect["delta1"] == 1.0
    assert off["abs_rel"] == pytest.approx(0.25) and off["delta1"] == 0.0
    result = bench.aggregate([perfect, off])
    assert result["overall"] == pytest.approx(0.125) and result["metrics"]["delta1"] == pytest.approx(0.5)
    assert result["metrics"]["rmse"] == pytest.approx(0.5) and result["n"] == 2
    ramp = np.linspace(1.0, 5.0, 480 * 640, dtype=np.float32).reshape(480, 640)
    aligned = load_nyu_v2(_write_mat(tmp_path / "ramp.mat", [ramp]))  # default: scale and shift in depth
    relative = 3.0 * aligned[0].target() - 1.0
    assert aligned.score(aligned[0], relative)["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert load_nyu_v2(tmp_path / "ramp.mat", mode="none").score(aligned[0], relative)["abs_rel"] > 1.0
    with pytest.raises(TypeError, match="torch.Tensor depth map"):
        bench.score(bench[0], "a depth map")


def test_folder_of_rgb_and_sync_depth_pngs(tmp_path, write_image):
    for scene, frame, metres in (("bathroom", "00045", 1.5), ("kitchen", "00100", 3.0)):
        write_image(tmp_path / scene / f"rgb_{frame}.jpg", (9, 9, 9), size=(640, 480))
        Image.fromarray((_depth(metres) * 1000).astype(np.uint16)).save(
            tmp_path / scene / f"sync_depth_{frame}.png"
        )
    bench = load_nyu_v2(tmp_path, mode="none")
    assert [item.id for item in bench] == ["bathroom/rgb_00045", "kitchen/rgb_00100"]
    assert bench[0].category == "bathroom"
    target = bench[0].target()
    assert target.dtype == torch.float32 and float(target[240, 320]) == pytest.approx(1.5)
    assert bench.score(bench[1], torch.full((480, 640), 3.0))["abs_rel"] == 0.0


def test_reports_missing_and_malformed_files(tmp_path, write_image, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nyu_depth_v2_labeled.mat"):
        load_nyu_v2(tmp_path / "nyu_depth_v2_labeled.mat")
    with pytest.raises(FileNotFoundError, match="rgb_<id>"):
        load_nyu_v2(tmp_path)
    write_image(tmp_path / "s" / "rgb_00001.png", size=(640, 480))
    with pytest.raises(FileNotFoundError, match=r"1 depth files missing .*sync_depth_00001\.png"):
        load_nyu_v2(tmp_path)
    Image.fromarray(np.zeros((240, 320), dtype=np.uint16)).save(tmp_path / "s" / "sync_depth_00001.png")
    with pytest.raises(ValueError, match="must be 640 x 480"):
        load_nyu_v2(tmp_path)
    with pytest.raises(ValueError, match="folder layout takes none"):
        load_nyu_v2(tmp_path, indices=[0])
    mat = _write_mat(tmp_path / "nyu.mat", [_depth(2.0)])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 1\)"):
        load_nyu_v2(mat, indices=[1])
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="needs h5py"):
        load_nyu_v2(mat)


def test_mat_file_without_depths_is_rejected(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "bad.mat", "w") as f:
        f["images"] = np.zeros((1, 3, 640, 480), dtype=np.uint8)
    with pytest.raises(ValueError, match="lacks the dataset 'depths'"):
        load_nyu_v2(tmp_path / "bad.mat")


def test_depth_run_metrics_read_back_the_mean_of_cached_scores(tmp_path):
    mat = _write_mat(tmp_path / "nyu.mat", [_depth(2.0), _depth(4.0)])
    bench = load_nyu_v2(mat, mode="none")
    scores = [
        bench.score(bench[0], torch.full((480, 640), 2.0)),
        bench.score(bench[1], torch.full((480, 640), 5.0)),
    ]
    figures = depth_run_metrics("nyu", scores)
    assert figures["benchmark"] == "nyu" and figures["n"] == 2
    assert figures["overall"] == pytest.approx(0.125) == figures["metrics"]["abs_rel"]
    assert figures["metrics"] == pytest.approx(bench.aggregate(scores)["metrics"])


def test_depth_model_needs_a_spatial_model_and_no_policy():
    with pytest.raises(TypeError, match="needs a SpatialModel"):
        depth_model(object(), None)
    with pytest.raises(ValueError, match="runs the depth head directly; got policy='adaptive'"):
        depth_model(object(), "adaptive")


def test_truncated_mat_file_names_the_file(tmp_path):
    path = _write_mat(tmp_path / "nyu_depth_v2_labeled.mat", [_depth(2.0)])
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(
        ValueError, match=r"nyu_depth_v2_labeled\.mat: not a readable HDF5 file, truncated or corrupt"
    ):
        load_nyu_v2(path)
