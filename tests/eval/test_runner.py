import base64
import csv
import json

import numpy as np
import pytest
from benchmark_files import MMBENCH_HEADER, SIBENCH_HEADER, write_qspatial_prompts, write_tsv
from PIL import Image

from cooper_lib import add_spatial_heads
from cooper_lib.backbones.tiny import build_tiny_backbone
from cooper_lib.eval import (
    Benchmark,
    BenchmarkItem,
    evaluate,
    load_benchmark,
    load_result,
    load_synthetic,
    write_report,
)
from cooper_lib.eval.runner import read_cache, tool_use
from cooper_lib.reasoning import InterleavedReasoner, ReasoningStep, ReasoningTrace


@pytest.fixture(scope="module")
def model():
    backbone, processor = build_tiny_backbone("qwen2_vl")
    return add_spatial_heads(backbone, processor)


@pytest.fixture(scope="module")
def bench():
    return load_synthetic(n=1, seed=3)  # four questions about one rendered scene


class Counting:
    """Wraps a reasoner: counts run_batch calls and questions, raises on call number `fail_on`."""

    def __init__(self, inner, fail_on=None):
        self.inner, self.fail_on = inner, fail_on
        self.policy = inner.policy
        self.calls, self.questions = 0, []

    def run_batch(self, images, questions):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("killed")
        self.questions += list(questions)
        return self.inner.run_batch(images, questions)


class Scripted:
    """A reasoner answering from a script: question -> (answer text, tools called)."""

    def __init__(self, script):
        self.script = script

    def run_batch(self, images, questions):
        traces = []
        for image, question in zip(images, questions, strict=True):
            text, tools = self.script[question]
            steps = [ReasoningStep("tool_call", 0, modality=m) for m in tools]
            traces.append(ReasoningTrace(question, image, "scripted", steps=steps, raw_answer=text))
        return traces


def _reasoner(model, policy="adaptive"):
    return InterleavedReasoner(
        model, policy=policy, max_new_tokens_per_turn=4, max_turns=1 if policy == "adaptive" else 3
    )


def test_evaluates_a_tiny_model_on_the_synthetic_benchmark(model, bench, tmp_path):
    out = tmp_path / "run.jsonl"
    result = evaluate(model, bench, output=out, batch_size=2, max_new_tokens=4, max_turns=1, progress=False)
    assert result.policy == "adaptive" and result.computed == len(bench) == 4
    assert [r["id"] for r in result.records] == [item.id for item in bench]
    assert result.metrics["n"] == result.metrics["n_items"] == 4 and "per_cpr" in result.metrics
    assert result.tool_use["all"]["n"] == 4
    header, records = read_cache(out)
    assert (header["benchmark"], header["policy"]) == ("synthetic", "adaptive") and records == result.records
    table = result.table()
    assert table.splitlines()[-1].startswith("| all | 4 |")


def test_a_killed_run_resumes_without_recomputing(model, bench, tmp_path):
    out = tmp_path / "run.jsonl"
    killed = Counting(_reasoner(model), fail_on=3)
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(killed, bench, output=out, batch_size=1, progress=False)
    assert killed.calls == 3 and len(read_cache(out)[1]) == 2
    with out.open("a") as handle:  # a crash in the middle of writing a line
        handle.write('{"id": "000000-2", "categ')
    resumed = Counting(_reasoner(model))
    result = evaluate(resumed, bench, output=out, batch_size=1, progress=False)
    assert resumed.calls == 2 and result.computed == 2
    assert resumed.questions == [bench[2].question, bench[3].question]
    fresh = evaluate(_reasoner(model), bench, batch_size=4, progress=False)
    assert result.records == fresh.records  # greedy decoding: resuming changes nothing
    assert len(read_cache(out)[1]) == 4
    again = Counting(_reasoner(model))
    assert evaluate(again, bench, output=out, progress=False).computed == 0 and again.calls == 0


def test_policies_show_in_the_tool_use_statistics(model, bench):
    first = evaluate(model, bench, policy="perceive_first", max_new_tokens=4, limit=2, progress=False)
    assert [r["tools"] for r in first.records] == [["depth", "segmentation"]] * 2
    assert first.tool_use["all"] == {"n": 2, "depth": 100.0, "segmentation": 100.0, "text_only": 0.0}
    text = evaluate(model, bench, policy="text_only", max_new_tokens=4, limit=2, progress=False)
    assert text.tool_use["all"]["text_only"] == 100.0 and text.policy == "text_only"


def test_scores_answers_and_counts_tools_per_category(bench):
    answers = {item.id: item.answer for item in bench}
    # 000000-0 choice, 000000-1 number (m), 000000-2 number, 000000-3 yes/no
    script = {
        bench[0].question: (f"\\boxed{{{answers['000000-0']}}}", ["depth"]),
        bench[1].question: (
            f"\\boxed{{{answers['000000-1'] * 1.26:g}}}",
            ["depth", "segmentation"],
        ),  # 26 % off: MRA 5 of 10
        bench[2].question: ("no idea", []),
        bench[3].question: (f"\\boxed{{{answers['000000-3']}}}", ["segmentation"]),
    }
    result = evaluate(Scripted(script), bench, progress=False)
    assert result.policy == "custom"
    assert [r["score"]["score"] for r in result.records] == pytest.approx([1.0, 0.5, 0.0, 1.0])
    assert result.metrics["extraction_failures"] == 1
    assert result.tool_use["distance_camera"] == {
        "n": 1,
        "depth": 100.0,
        "segmentation": 100.0,
        "text_only": 0.0,
    }
    assert result.tool_use["all"] == {"n": 4, "depth": 50.0, "segmentation": 50.0, "text_only": 25.0}
    assert tool_use(result.records) == result.tool_use


def _cvbench(root, write_image):
    rows = [("Count", "(A)"), ("Relation", "(B)"), ("Count", "(C)")]
    with (root / "test.jsonl").open("w") as handle:
        for idx, (task, answer) in enumerate(rows):
            record = {"idx": idx, "type": "2D", "task": task, "question": "q?", "choices": ["a", "b", "c"],
                      "answer": answer, "prompt": "q?\n(A) a\n(B) b\n(C) c", "filename": f"img/{idx}.png",
                      "source": "COCO"}  # fmt: skip
            handle.write(json.dumps(record) + "\n")
            write_image(root / record["filename"])


def _mmvp(root, write_image):
    rows = [
        [1, "Open or closed?", "(a) Open (b) Closed", "(a)"],
        [2, "Open or closed?", "(a) Open (b) Closed", "(b)"],
    ]
    with (root / "Questions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Index", "Question", "Options", "Correct Answer"])
        writer.writerows(rows)
    for row in rows:
        write_image(root / "MMVP Images" / f"{row[0]}.jpg")


def _sibench(root, write_image):
    write_image(root / "SpatialBench" / "1.jpg")
    write_tsv(root / "Height.tsv", SIBENCH_HEADER, [
        [0, "How tall is the door in metres?", "2.0", "Number", "SpatialBench/1.jpg", "image", "SpatialBench"],
        [1, "Is the door open?", "Yes", "YN", "SpatialBench/1.jpg", "image", "SpatialBench"],
    ])  # fmt: skip
    return root, {"settings": ("Height",)}


def _mmbench(root, write_image):
    image = base64.b64encode(write_image(root / "x.png").read_bytes()).decode()
    write_tsv(root / "MMBench_DEV_EN_V11.tsv", MMBENCH_HEADER, [
        [0, "Which is red?", "", "cup", "lamp", "", "", "A", "attribute", "perception", "dev", image],
        [1, "Which is left?", "", "cup", "lamp", "", "", "B", "spatial", "perception", "dev", image],
    ])  # fmt: skip
    return root / "MMBench_DEV_EN_V11.tsv", {}


def _qspatial(root, write_image):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    image = {"bytes": write_image(root / "x.png").read_bytes(), "path": "x.png"}
    schema = pa.schema(
        [("question", pa.string()), ("answer_value", pa.float32()), ("answer_unit", pa.string()),
         ("question_type", pa.string()), ("image_path", pa.string()),
         ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))]
    )  # fmt: skip
    rows = {"question": ["How far?", "How wide?"], "answer_value": [1.2, 40.0],
            "answer_unit": ["meters", "centimeters"], "question_type": ["distance", "width"],
            "image_path": ["x.png"] * 2, "image": [image] * 2}  # fmt: skip
    (root / "data").mkdir()
    pq.write_table(pa.table(rows, schema=schema), root / "data" / "QSpatial_plus-00000-of-00001.parquet")
    write_qspatial_prompts(root / "prompt_templates")


@pytest.mark.parametrize(
    ("name", "writer", "expected"),
    [("cvbench", _cvbench, 3), ("mmvp", _mmvp, 2), ("sibench", _sibench, 2), ("mmbench", _mmbench, 2),
     ("qspatial", _qspatial, 2)],
)  # fmt: skip
def test_evaluates_fixture_copies_of_loader_formats(model, tmp_path, write_image, name, writer, expected):
    path, kwargs = writer(tmp_path, write_image) or (tmp_path, {})
    benchmark = load_benchmark(name, path, **kwargs)
    out = tmp_path / f"{name}.jsonl"
    result = evaluate(
        model, benchmark, output=out, batch_size=2, max_new_tokens=4, max_turns=1, progress=False
    )
    assert (
        result.metrics["benchmark"] == benchmark.name and result.metrics["n"] == expected == result.computed
    )
    reloaded = load_result(out, benchmark)
    assert reloaded.metrics == result.metrics and reloaded.tool_use == result.tool_use


def test_rejects_bad_arguments(model, bench, tmp_path):
    out = tmp_path / "run.jsonl"
    evaluate(Scripted({bench[0].question: ("A", [])}), bench, output=out, limit=1, progress=False)
    with pytest.raises(
        ValueError, match="caches another run \\(policy, model, settings differ: policy 'custom' there"
    ):
        evaluate(model, bench, output=out, progress=False)
    with pytest.raises(ValueError, match="max_new_tokens, max_turns: set them on the reasoner"):
        evaluate(_reasoner(model), bench, max_new_tokens=8)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, bench, batch_size=0)
    with pytest.raises(ValueError, match="policy: expected one of"):
        evaluate(model, bench, policy="always")
    with pytest.raises(ValueError, match="the reasoner runs 'adaptive'"):
        evaluate(_reasoner(model), bench, policy="text_only")
    with pytest.raises(TypeError, match="model_or_reasoner"):
        evaluate(object(), bench)
    mixed = Benchmark(
        "mixed",
        [BenchmarkItem("d0", lambda: Image.new("RGB", (4, 4)), "", None, "depth", target=lambda: None),
         *bench.items[:1]],
    )  # fmt: skip
    with pytest.raises(ValueError, match="mixes 1 depth-map items with 1 question items"):
        evaluate(model, mixed)
    (tmp_path / "other.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="not a cooper-lib eval cache"):
        evaluate(model, bench, output=tmp_path / "other.jsonl")


def test_a_cache_is_never_resumed_by_another_model_or_setting(model, bench, tmp_path):
    out = tmp_path / "run.jsonl"
    evaluate(model, bench, output=out, limit=1, max_new_tokens=4, max_turns=1, progress=False)
    header, _ = read_cache(out)
    assert header["model"]["backbone"].startswith("Qwen2VL") and len(header["model"]["weights"]) == 64
    assert header["settings"]["max_new_tokens"] == 4 and header["settings"]["sampling"]["temperature"] == 0
    backbone, processor = build_tiny_backbone("qwen2_vl", seed=1)  # same architecture, other weights
    other = add_spatial_heads(backbone, processor)
    with pytest.raises(ValueError, match="caches another run \\(model differ"):
        evaluate(other, bench, output=out, max_new_tokens=4, max_turns=1, progress=False)
    with pytest.raises(ValueError, match="settings differ: .*'max_new_tokens': 4.*'max_new_tokens': 5"):
        evaluate(model, bench, output=out, max_new_tokens=5, max_turns=1, progress=False)
    sampled = InterleavedReasoner(
        model, max_new_tokens_per_turn=4, max_turns=1, generation_kwargs={"seed": 7}
    )
    with pytest.raises(ValueError, match="settings differ"):
        evaluate(sampled, bench, output=out, progress=False)
    again = evaluate(model, bench, output=out, limit=1, max_new_tokens=4, max_turns=1, progress=False)
    assert again.computed == 0  # the same model and settings resume


def _nyu_folder(root, frames=3):
    """The Eigen-copy folder layout: <scene>/rgb_<frame>.png beside a 16-bit sync_depth_<frame>.png (mm)."""
    for k in range(frames):
        scene = root / f"scene{k % 2}"
        scene.mkdir(exist_ok=True)
        Image.new("RGB", (640, 480), (40 * k, 90, 200)).save(scene / f"rgb_{k:05d}.png")
        depth = np.full((480, 640), 1000 * (1 + k), dtype=np.uint16)
        Image.fromarray(depth).save(scene / f"sync_depth_{k:05d}.png")


def test_nyu_is_scored_on_the_depth_heads_maps_and_resumes(model, tmp_path):
    _nyu_folder(tmp_path)
    benchmark = load_benchmark("nyuv2", tmp_path)
    out = tmp_path / "nyu.jsonl"
    first = evaluate(model, benchmark, output=out, batch_size=2, limit=2, progress=False)
    assert first.policy == "depth_map" and first.computed == 2
    result = evaluate(model, benchmark, output=out, batch_size=2, progress=False)
    assert result.computed == 1 and result.metrics["n"] == 3
    # the cached scores are the protocol's metrics of the maps the depth head makes
    item = benchmark[2]
    depth = model.perceive([item.load_image()], "depth")[0]
    expected = benchmark.score(item, depth)
    assert result.records[2]["score"]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-5)
    assert result.records[2]["tools"] == ["depth"]
    assert "| abs_rel |" in result.table() and "3 images" in result.table()
    reloaded = load_result(out)  # without the benchmark: the same mean metrics from the cache
    assert reloaded.metrics["metrics"] == pytest.approx(result.metrics["metrics"])
    with pytest.raises(ValueError, match="is a depth-map run"):
        write_report([reloaded], tmp_path / "report")
    with pytest.raises(ValueError, match="depth-map benchmark runs the depth head directly"):
        evaluate(model, benchmark, policy="adaptive")
    backbone, processor = build_tiny_backbone("qwen2_vl")
    with pytest.raises(ValueError, match="has no depth head"):
        evaluate(add_spatial_heads(backbone, processor, modalities=("segmentation",)), benchmark)


def test_evaluation_reasons_with_coopers_prompts(model):
    from cooper_prompts import COOPER_REFLECTION_PROMPT, COOPER_SYSTEM_PROMPT

    from cooper_lib.eval.runner import _reasoner

    reasoner, policy = _reasoner(model, None, 4, 3)
    assert policy == "adaptive"
    assert (reasoner.system_prompt, reasoner.reflection_prompt) == (
        COOPER_SYSTEM_PROMPT,
        COOPER_REFLECTION_PROMPT,
    )
