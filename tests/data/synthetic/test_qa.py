"""Every answer of make_qa is recomputed here from the metadata and the maps, independently."""

import math
import random
import re
from collections import Counter

import pytest
import torch

from cooper_lib.data.synthetic import (
    CATEGORIES,
    CATEGORY_INFO,
    COLOURS,
    SHAPES,
    SceneConfig,
    SpatialQuestion,
    make_qa,
    render_scenes,
)
from cooper_lib.data.synthetic.qa import LETTERS, default_min_pixels

SCENES = render_scenes(40, seed=21, config=SceneConfig(width=64, height=64, min_objects=2, max_objects=7))


def chosen(q: SpatialQuestion) -> str:
    return q.choices[LETTERS.index(q.answer)]


def by_name(scene, text: str):
    return next(o for o in scene.objects if text == f"the {o.name}")


def extent(scene, obj, axis: int) -> tuple[int, int]:
    """(first, last) column (axis 0) or row (axis 1) of the object's pixels in the instance map."""
    rows, cols = (scene.instance == obj.instance_id).nonzero(as_tuple=True)
    values = cols if axis == 0 else rows
    return values.min().item(), values.max().item()


def check(scene, q: SpatialQuestion) -> None:
    objs = [scene.objects[i - 1] for i in q.objects]
    yes = q.answer == "yes"
    if q.category == "relative_depth":
        closer = "closer" in q.question
        if q.answer_type == "choice":
            pick = by_name(scene, chosen(q))
            other = next(o for o in objs if o is not pick)
            assert (pick.distance < other.distance) == closer
        else:
            a, b = objs
            assert yes == ((a.distance < b.distance) == closer)
    elif q.category == "closest_object":
        distances = {f"the {o.name}": o.distance for o in objs}
        best = min if "closest" in q.question else max
        assert chosen(q) == best(distances, key=distances.get)
    elif q.category == "distance_camera":
        assert q.value == pytest.approx(
            objs[0].distance * (100 if q.unit == "cm" else 1), abs=0.5 if q.unit == "cm" else 0.005
        )
    elif q.category == "distance_between":
        metres = math.dist(objs[0].centre, objs[1].centre)
        assert q.value == pytest.approx(
            metres * (100 if q.unit == "cm" else 1), abs=0.5 if q.unit == "cm" else 0.005
        )
    elif q.category in ("height", "width"):
        metres = objs[0].size[1 if q.category == "height" else 0]
        assert q.value == pytest.approx(
            metres * (100 if q.unit == "cm" else 1), abs=0.5 if q.unit == "cm" else 0.005
        )
    elif q.category == "size_compare":
        assert by_name(scene, chosen(q)).size[1] == max(o.size[1] for o in objs)
    elif q.category in ("count_shape", "count_colour"):
        ids = scene.instance.unique().tolist()
        attribute = "shape" if q.category == "count_shape" else "colour"
        counted = [
            i
            for i in ids
            if i > 0
            and getattr(scene.objects[i - 1], attribute) == q.subject
            and (scene.instance == i).sum() >= default_min_pixels(scene)
        ]
        assert int(q.answer) == len(counted)
    elif q.category in ("left_right", "above_below"):
        axis = 0 if q.category == "left_right" else 1
        (a0, a1), (b0, b1) = extent(scene, objs[0], axis), extent(scene, objs[1], axis)
        assert a1 < b0 or b1 < a0
        first = objs[0] if a1 < b0 else objs[1]  # the one further left, or higher in the image
        asks_first = "left" in q.question if axis == 0 else "above" in q.question
        if q.answer_type == "choice":
            assert (by_name(scene, chosen(q)) is first) == asks_first
        else:
            assert yes == ((first is objs[0]) == asks_first)
    elif q.category == "occlusion":
        obj = objs[0]
        hidden = 1 - (scene.instance == obj.instance_id).sum().item() / obj.projected_pixels
        assert yes == (hidden >= 0.25)
    elif q.category == "existence":
        named = [(c, s) for c in COLOURS for s in SHAPES if f"{c} {s}" in q.question]
        assert len(named) == 1
        present = any((o.colour, o.shape) == named[0] for o in scene.objects)
        assert yes == present
    elif q.category == "colour":
        assert chosen(q) == objs[0].colour
        assert objs[0].shape in q.question
    elif q.category == "shape":
        assert chosen(q) == objs[0].shape
        assert objs[0].colour in q.question
    else:
        raise AssertionError(q.category)


def test_answers_agree_with_metadata_and_maps():
    seen = Counter()
    for scene in SCENES:
        for q in make_qa(scene, scene.seed, per_category=3):
            check(scene, q)
            seen[q.category] += 1
            assert (q.modality, q.cpr) == CATEGORY_INFO[q.category]
    assert set(seen) == set(CATEGORIES)


def test_answer_formats():
    for scene in SCENES[:10]:
        for q in make_qa(scene, 0):
            if q.answer_type == "choice":
                assert q.answer in LETTERS[: len(q.choices)] and len(set(q.choices)) == len(q.choices)
                assert q.prompt.endswith("Answer with the option's letter.")
            elif q.answer_type == "yes_no":
                assert q.answer in ("yes", "no")
            elif q.answer_type == "integer":
                assert q.answer == str(int(q.value))
            else:
                assert q.unit in ("m", "cm") and float(q.answer) == q.value
                assert q.boxed == f"{q.answer} {q.unit}"


def test_deterministic_per_seed_and_paraphrased():
    scene = SCENES[0]
    assert make_qa(scene, 5) == make_qa(scene, 5)
    assert make_qa(scene, 5) == make_qa(scene, random.Random(5))
    stems = {q.question.split(" the ")[0] for s in SCENES for q in make_qa(s, s.seed, categories=["height"])}
    assert len(stems) >= 3


def test_letters_are_shuffled():
    letters = Counter(
        q.answer for s in SCENES for q in make_qa(s, s.seed, per_category=5) if q.answer_type == "choice"
    )
    assert letters["A"] > 10 and letters["B"] > 10 and letters["C"] > 3


def test_filters_and_limits():
    scene = max(SCENES, key=lambda s: len(s.objects))
    only = make_qa(scene, 0, categories=["count_shape", "existence"], per_category=2)
    assert {q.category for q in only} <= {"count_shape", "existence"} and len(only) <= 4
    assert len(make_qa(scene, 0, max_questions=3)) == 3
    with pytest.raises(ValueError, match="categories"):
        make_qa(scene, 0, categories=["weather"])
    with pytest.raises(ValueError, match="per_category"):
        make_qa(scene, 0, per_category=0)


def test_tiny_objects_are_never_asked_about():
    scene = SCENES[3]
    threshold = max(o.visible_pixels for o in scene.objects) + 1
    questions = make_qa(scene, 0, min_pixels=threshold, per_category=5)
    assert all(not q.objects for q in questions)  # only counts of zero and absent objects remain
    assert all(q.answer in ("0", "no") for q in questions)


def test_round_trip_through_dict():
    for q in make_qa(SCENES[1], 0):
        assert SpatialQuestion.from_dict(q.to_dict()) == q


def test_scene_maps_unchanged_by_qa():
    scene = SCENES[2]
    before = scene.instance.clone()
    make_qa(scene, 0)
    assert torch.equal(before, scene.instance)


def test_every_template_category_has_three_or_four_paraphrases():
    from cooper_lib.data.synthetic.templates import QUESTION_TEMPLATES

    counts = {name: len(set(texts)) for name, texts in QUESTION_TEMPLATES.items()}
    assert all(3 <= n <= 4 for n in counts.values()), counts


BALANCE_SCENES = render_scenes(300, seed=5, config=SceneConfig(width=32, height=32))


def _answers(questions_per_scene: int, balance) -> dict[tuple[str, str], Counter]:
    answers: dict[tuple[str, str], Counter] = {}
    for scene in BALANCE_SCENES:
        rng = random.Random(f"qa-{scene.seed}")
        for q in make_qa(scene, rng, max_questions=questions_per_scene, balance=balance):
            answers.setdefault((q.category, q.answer_type), Counter())[q.answer] += 1
    return answers


def test_answer_balance_evens_yes_no_and_spreads_counts_over_a_dataset():
    from cooper_lib.data.synthetic.qa import AnswerBalance

    def top_share(counts: Counter) -> float:
        return max(counts.values()) / sum(counts.values())

    plain, balanced = _answers(15, None), _answers(15, AnswerBalance())
    assert top_share(plain[("occlusion", "yes_no")]) > 0.8  # what the balance is for
    for (category, kind), counts in balanced.items():
        if kind == "yes_no":
            assert sum(counts.values()) >= 40 and abs(counts["yes"] - counts["no"]) <= 1, (category, counts)
        if kind == "integer":  # 0, 1 and 2 about even; 3 and more only where scenes have them
            assert top_share(counts) < 0.42 and top_share(counts) < top_share(plain[(category, kind)]) - 0.04
            before = plain[(category, kind)]
            assert counts["2"] / counts["0"] > 1.5 * before["2"] / before["0"], (category, counts, before)


PAIR_CATEGORIES = ("relative_depth", "left_right", "above_below")


@pytest.mark.parametrize("category", PAIR_CATEGORIES)
def test_balance_keeps_a_yes_no_question_for_every_scene_with_a_pair(category):
    from cooper_lib.data.synthetic.qa import AnswerBalance

    def asked(balance) -> list[SpatialQuestion]:
        kept = []
        for scene in BALANCE_SCENES:
            rng = random.Random(f"qa-{scene.seed}")
            kept += make_qa(
                scene, rng, categories=[category], answer_types={category: ["yes_no"]}, balance=balance
            )
        return kept

    offered, balanced = asked(None), asked(AnswerBalance())
    answers = Counter(q.answer for q in balanced)
    assert len(offered) >= 40 and len(balanced) == len(offered)  # each pair offers either answer
    assert abs(answers["yes"] - answers["no"]) <= 1, answers


def test_a_pair_is_asked_once_however_many_questions_a_category_draws():
    for scene in SCENES:
        for category in PAIR_CATEGORIES:
            questions = make_qa(scene, scene.seed, categories=[category], per_category=50)
            pairs = [frozenset(q.objects) for q in questions]
            assert len(pairs) == len(set(pairs)), (category, [q.question for q in questions])
            for q in questions:
                check(scene, q)


def test_short_style_numbers_are_metres_with_one_decimal():
    numbers = [
        (scene, q)
        for scene in SCENES[:10]
        for q in make_qa(scene, 1, answer_style="short")
        if q.answer_type == "number"
    ]
    assert len(numbers) > 20
    for scene, q in numbers:
        assert q.unit == "m" and re.fullmatch(r"\d+\.\d", q.answer) and q.answer_phrase == f"{q.answer} m"
        assert abs(float(q.answer) - q.value) <= 0.05 + 0.006 and q.prompt.endswith("Answer in metres.")
        if q.category == "distance_camera":
            (obj,) = [o for o in scene.objects if o.instance_id == q.objects[0]]
            assert q.value == round(obj.distance, 2) and q.answer == f"{obj.distance:.1f}"
    with pytest.raises(ValueError, match="answer_style"):
        make_qa(SCENES[0], answer_style="terse")


def test_short_text_style_answers_choices_with_the_option_text():
    pairs = [
        (q_short, q_text)
        for scene in SCENES[:10]
        for q_short, q_text in zip(
            make_qa(scene, 1, answer_style="short"), make_qa(scene, 1, answer_style="short_text"), strict=True
        )
    ]
    choices = [(a, b) for a, b in pairs if a.answer_type == "choice"]
    assert len(choices) > 10
    for short, text in pairs:  # same questions and keys; only what a choice boxes and asks for differs
        assert (short.question, short.answer, short.choices, short.value) == (
            text.question,
            text.answer,
            text.choices,
            text.value,
        )
        if short.answer_type == "choice":
            assert short.boxed == short.answer and text.boxed == text.choices[LETTERS.index(text.answer)]
            assert short.prompt.endswith("letter.") and text.prompt.endswith("Answer with the option's text.")
        else:
            assert text.boxed == short.boxed and text.prompt == short.prompt
    assert SpatialQuestion.from_dict(choices[0][1].to_dict()).boxed == choices[0][1].boxed


def test_answer_types_keep_a_categorys_named_forms_only():
    def forms(**kwargs) -> Counter:
        return Counter(
            (q.category, q.answer_type)
            for scene in SCENES[:20]
            for q in make_qa(scene, 2, categories=["relative_depth", "colour"], per_category=3, **kwargs)
        )

    every, yes_no = forms(), forms(answer_types={"relative_depth": ["yes_no"]})
    assert every[("relative_depth", "choice")] > 5 and every[("relative_depth", "yes_no")] > 5
    assert yes_no[("relative_depth", "choice")] == 0 and yes_no[("relative_depth", "yes_no")] > 5
    assert yes_no[("colour", "choice")] == every[("colour", "choice")] > 0  # categories not named keep theirs
    with pytest.raises(ValueError, match="answer_types: unknown category 'depthness'"):
        make_qa(SCENES[0], answer_types={"depthness": ["yes_no"]})
    with pytest.raises(ValueError, match=r"answer_types\['relative_depth'\]: expected a non-empty list"):
        make_qa(SCENES[0], answer_types={"relative_depth": "yes_no"})
    with pytest.raises(ValueError, match=r"answer_types\['colour'\]"):
        make_qa(SCENES[0], answer_types={"colour": ["essay"]})
