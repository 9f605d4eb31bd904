from cooper_lib.demo import DemoConfig, run


def test_demo_trains_and_writes_grids(tmp_path):
    config = DemoConfig(
        steps=40, batch_size=4, train_scenes=64, eval_scenes=4, map_size=16, lr=3e-3, out=str(tmp_path)
    )
    result = run(config)
    assert set(result.before) == {"depth AbsRel", "depth delta1", "seg mIoU"}
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.9 * first, (first, last)
    assert all(path.exists() for path in result.files)
    assert (tmp_path / "heads" / "spatial_heads.safetensors").is_file()
