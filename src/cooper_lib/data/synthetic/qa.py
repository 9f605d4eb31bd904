"""Spatial questions with exact answers, made from a scene's metadata.

Categories follow the spatial benchmarks COOPER reports (relative depth, metric distance and
size, counting, left/right/above/below, existence, occlusion, attributes). Each records the
auxiliary map that would help and COOPER's CPR flag (`CATEGORY_INFO`): questions a depth or
segmentation map answers directly are `positive`, questions about colour or existence (no map
helps) are `negative`, and questions a map helps only sometimes are `boundary`.

Only unambiguous questions are asked: objects must show at least `min_pixels` pixels, compared
distances and heights must differ by a margin (`DEPTH_RATIO`, `HEIGHT_RATIO`; the order by
centre distance must also be the order of the objects' median depth in the depth map), left/right and
above/below need non-overlapping pixel extents, and counts are skipped when an object of the
counted kind is only a sliver. Distances are between centres (object centre = centre of its
bounding box); sizes are the object's extents (`SceneObject.size`).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cooper_lib.data.answers import ANSWER_TYPES
from cooper_lib.data.records import QARecord

from .config import COLOURS, SHAPES
from .scene import SceneObject, SpatialScene
from .templates import ANSWER_INSTRUCTIONS, PLURALS, QUESTION_TEMPLATES

CATEGORY_INFO: dict[str, tuple[str | None, str]] = {
    "relative_depth": ("depth", "positive"),
    "closest_object": ("depth", "positive"),
    "distance_camera": ("depth", "positive"),
    "distance_between": ("depth", "positive"),
    "height": ("depth", "positive"),
    "width": ("depth", "positive"),
    "size_compare": ("depth", "boundary"),
    "count_shape": ("segmentation", "positive"),
    "count_colour": ("segmentation", "boundary"),
    "left_right": ("segmentation", "positive"),
    "above_below": ("segmentation", "positive"),
    "occlusion": ("segmentation", "boundary"),
    "shape": ("segmentation", "boundary"),
    "existence": (None, "negative"),
    "colour": (None, "negative"),
}
"""Category -> (helpful modality or None, CPR flag)."""

CATEGORIES: tuple[str, ...] = tuple(CATEGORY_INFO)
DEPTH_RATIO = 1.15  # farther / closer centre distance needed to ask which is closer
HEIGHT_RATIO = 1.25  # taller / shorter height needed to ask which is taller
OCCLUDED = 0.25  # occlusion ratio from which an object counts as partly hidden (0 means fully visible)
LETTERS = "ABCDEFGH"
ANSWER_STYLES = ("full", "short", "short_text")
"""`make_qa` answer styles: "full" numbers in m (2 decimals) or cm at random; "short" numbers
always in metres with one decimal ("2.4"), the shortest canonical form; "short_text" as "short",
but a choice question is answered with its option's text ("red", "the blue box") instead of the
letter, so a model trained from scratch maps what it sees straight to words rather than through the
option list (the grader accepts either; benchmarks/RESULTS.md, "Table 1 (synthetic)")."""


@dataclass(frozen=True)
class SpatialQuestion:
    """A question with its exact answer.

    Attributes:
        question: the question stem (see `prompt` for the full text with options and instruction).
        answer: canonical short answer: an option letter, "yes"/"no", an integer, or a number in `unit`.
        answer_type: "choice", "number", "yes_no" or "integer" (`cooper_lib.data.answers`).
        category: one of `CATEGORIES`.
        modality: the auxiliary map that would help ("depth", "segmentation") or None.
        cpr: COOPER's exploration flag: "positive", "negative" or "boundary".
        answer_phrase: the answer in words ("B. the red sphere", "1.25 m", "3", "yes").
        unit: "m" or "cm" for number questions.
        choices: option texts in letter order, for choice questions.
        value: numeric truth (in `unit`) of number and count questions.
        objects: instance ids of the objects the question is about.
        subject: the shape or colour a count question is about.
        answer_style: the `ANSWER_STYLES` entry it was made with ("short_text" choice questions
            ask for, and box, the option's text).
    """

    question: str
    answer: str
    answer_type: str
    category: str
    modality: str | None
    cpr: str
    answer_phrase: str
    unit: str | None = None
    choices: tuple[str, ...] = ()
    value: float | None = None
    objects: tuple[int, ...] = ()
    subject: str | None = None
    answer_style: str = "full"

    @property
    def named_choice(self) -> bool:
        """A choice question answered with its option's text ("short_text")."""
        return self.answer_type == "choice" and self.answer_style == "short_text"

    @property
    def prompt(self) -> str:
        """The question as shown to a model: stem, lettered options, answer instruction."""
        lines = [self.question]
        lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(self.choices)]
        kind = "choice_text" if self.named_choice else self.answer_type
        lines.append(ANSWER_INSTRUCTIONS[self.unit if self.answer_type == "number" else kind])
        return "\n".join(lines)

    @property
    def boxed(self) -> str:
        """What goes inside `\\boxed{}`: the answer, with its unit for numbers, or the option's
        text for a "short_text" choice question."""
        if self.named_choice:
            return self.choices[LETTERS.index(self.answer)]
        return f"{self.answer} {self.unit}" if self.unit else self.answer

    def record(self, id: str, image: Any, meta: dict[str, Any]) -> QARecord:
        """This question as a `QARecord` row (what the writer stores and the benchmark scores)."""
        return QARecord(
            id=id,
            image=image,
            question=self.prompt,
            answer=self.answer,
            answer_type=self.answer_type,
            category=self.category,
            cpr=self.cpr,
            modality=self.modality,
            unit=self.unit,
            choices=list(self.choices),
            value=self.value,
            meta=meta,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["choices"], data["objects"] = list(self.choices), list(self.objects)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SpatialQuestion:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["choices"], values["objects"] = (
            tuple(values.get("choices", ())),
            tuple(values.get("objects", ())),
        )
        return cls(**values)


def visible_depth(scene: SpatialScene, obj: SceneObject) -> float:
    """Median z-depth (m) of the object's visible pixels: how far the depth map shows it."""
    return float(scene.depth[scene.instance == obj.instance_id].median())


def article(name: str) -> str:
    """ "a red sphere" / "an orange box"."""
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


class _Maker:
    """Shared state of one `make_qa` call: the scene, the random stream, the visibility threshold."""

    def __init__(self, scene: SpatialScene, rng: random.Random, min_pixels: int, answer_style: str = "full"):
        self.scene, self.rng, self.min_pixels, self.answer_style = scene, rng, min_pixels, answer_style
        self.referable = [o for o in scene.objects if o.visible_pixels >= min_pixels]
        self.depth = {o.instance_id: visible_depth(scene, o) for o in self.referable}

    def nearer(self, a: SceneObject, b: SceneObject) -> bool:
        """a is clearly nearer than b: centre distances differ by `DEPTH_RATIO` and the depth map agrees."""
        return (
            b.distance >= DEPTH_RATIO * a.distance and self.depth[a.instance_id] < self.depth[b.instance_id]
        )

    def template(self, key: str, **names: str) -> str:
        return self.rng.choice(QUESTION_TEMPLATES[key]).format(**names)

    def pairs(self) -> list[tuple[SceneObject, SceneObject]]:
        """Referable pairs, each in a random order."""
        return [
            (a, b) if self.rng.random() < 0.5 else (b, a)
            for a, b in itertools.combinations(self.referable, 2)
        ]

    def make(self, category: str, **kwargs) -> SpatialQuestion:
        modality, cpr = CATEGORY_INFO[category]
        return SpatialQuestion(
            category=category, modality=modality, cpr=cpr, answer_style=self.answer_style, **kwargs
        )

    def choice(self, category: str, stem: str, options: list[str], correct: str, **kwargs) -> SpatialQuestion:
        order = list(options)
        self.rng.shuffle(order)
        letter = LETTERS[order.index(correct)]
        return self.make(
            category,
            question=stem,
            answer=letter,
            answer_type="choice",
            answer_phrase=f"{letter}. {correct}",
            choices=tuple(order),
            **kwargs,
        )

    def pair_choice(
        self, category: str, stem: str, a: SceneObject, b: SceneObject, truth: SceneObject
    ) -> SpatialQuestion:
        """A choice between the two objects of a pair, `truth` the right one."""
        return self.choice(
            category, stem, [f"the {a.name}", f"the {b.name}"], f"the {truth.name}", objects=_ids(a, b)
        )

    def yes_no(self, category: str, stem: str, yes: bool, **kwargs) -> SpatialQuestion:
        word = "yes" if yes else "no"
        return self.make(
            category, question=stem, answer=word, answer_type="yes_no", answer_phrase=word, **kwargs
        )

    def number(self, category: str, stem: str, metres: float, **kwargs) -> SpatialQuestion:
        if self.answer_style != "full":  # the truth keeps two decimals; the answer text one
            unit, value, text = "m", round(metres, 2), f"{metres:.1f}"
        else:
            unit = self.rng.choice(("m", "cm"))
            value = round(metres, 2) if unit == "m" else round(metres * 100)
            text = f"{value:.2f}" if unit == "m" else str(value)
        return self.make(
            category,
            question=stem,
            answer=text,
            answer_type="number",
            answer_phrase=f"{text} {unit}",
            unit=unit,
            value=float(value),
            **kwargs,
        )

    def count(
        self, category: str, stem: str, n: int, subject: str, objects: tuple[int, ...]
    ) -> SpatialQuestion:
        return self.make(
            category,
            question=stem,
            answer=str(n),
            answer_type="integer",
            answer_phrase=str(n),
            value=float(n),
            subject=subject,
            objects=objects,
        )


def _ids(*objects: SceneObject) -> tuple[int, ...]:
    return tuple(o.instance_id for o in objects)


def _relative_depth(m: _Maker) -> list[SpatialQuestion]:
    """Per clearly ordered pair: a choice question and both yes/no phrasings ("closer to" and
    "farther from"), so every pair offers either yes/no answer to `AnswerBalance`."""
    out = []
    for a, b in m.pairs():
        near, far = sorted((a, b), key=lambda o: o.distance)
        if not m.nearer(near, far):
            continue
        rel, truth = m.rng.choice((("closer to", near), ("farther from", far)))
        stem = m.template("relative_depth_choice", rel=rel, a=a.name, b=b.name)
        out.append(m.pair_choice("relative_depth", stem, a, b, truth))
        for rel, truth in (("closer to", near), ("farther from", far)):
            stem = m.template("relative_depth_yesno", rel=rel, a=a.name, b=b.name)
            out.append(m.yes_no("relative_depth", stem, a is truth, objects=_ids(a, b)))
    return out


def _closest_object(m: _Maker) -> list[SpatialQuestion]:
    if len(m.referable) < 3:
        return []
    group = m.rng.sample(m.referable, min(4, len(m.referable)))
    ranked = sorted(group, key=lambda o: o.distance)
    closest = m.rng.random() < 0.5
    first = ranked[0] if closest else ranked[-1]
    others = [o for o in group if o is not first]
    if not all(m.nearer(first, o) if closest else m.nearer(o, first) for o in others):
        return []
    stem = m.template("closest_object", extreme="closest to" if closest else "farthest from")
    options = [f"the {o.name}" for o in group]
    return [m.choice("closest_object", stem, options, f"the {first.name}", objects=_ids(*group))]


def _distance_camera(m: _Maker) -> list[SpatialQuestion]:
    return [
        m.number("distance_camera", m.template("distance_camera", a=o.name), o.distance, objects=_ids(o))
        for o in m.referable
    ]


def _distance_between(m: _Maker) -> list[SpatialQuestion]:
    out = []
    for a, b in m.pairs():
        metres = sum((p - q) ** 2 for p, q in zip(a.centre, b.centre, strict=True)) ** 0.5
        out.append(
            m.number(
                "distance_between",
                m.template("distance_between", a=a.name, b=b.name),
                metres,
                objects=_ids(a, b),
            )
        )
    return out


def _height(m: _Maker) -> list[SpatialQuestion]:
    return [
        m.number("height", m.template("height", a=o.name), o.size[1], objects=_ids(o)) for o in m.referable
    ]


def _width(m: _Maker) -> list[SpatialQuestion]:
    # a yawed box has no single width as seen from the camera; round shapes have their diameter
    return [
        m.number("width", m.template("width", a=o.name), o.size[0], objects=_ids(o))
        for o in m.referable
        if o.shape != "box"
    ]


def _size_compare(m: _Maker) -> list[SpatialQuestion]:
    out = []
    for a, b in m.pairs():
        tall, short = sorted((a, b), key=lambda o: -o.size[1])
        if tall.size[1] / short.size[1] < HEIGHT_RATIO:
            continue
        stem = m.template("size_compare", a=a.name, b=b.name)
        out.append(m.pair_choice("size_compare", stem, a, b, tall))
    return out


def _count(m: _Maker, category: str, attribute: str, subjects: list[str]) -> list[SpatialQuestion]:
    out = []
    for subject in subjects:
        matching = [o for o in m.scene.objects if getattr(o, attribute) == subject]
        if any(0 < o.visible_pixels < m.min_pixels for o in matching):
            continue  # a sliver of an object: count ambiguous
        seen = [o for o in matching if o.visible_pixels >= m.min_pixels]
        names = {"shapes": PLURALS.get(subject, subject), "colour": subject}
        out.append(m.count(category, m.template(category, **names), len(seen), subject, _ids(*seen)))
    return out


def _count_shape(m: _Maker) -> list[SpatialQuestion]:
    return _count(m, "count_shape", "shape", list(SHAPES))


def _count_colour(m: _Maker) -> list[SpatialQuestion]:
    present = sorted({o.colour for o in m.scene.objects})
    absent = [c for c in COLOURS if c not in present]
    return _count(m, "count_colour", "colour", present + m.rng.sample(absent, min(1, len(absent))))


def _apart(a: SceneObject, b: SceneObject, axis: int) -> int:
    """-1 if a's visible pixels all lie before b's along the axis (0: columns, 1: rows), 1 if after, 0 if they overlap."""
    a_lo, a_hi, b_lo, b_hi = a.bbox[axis], a.bbox[axis + 2], b.bbox[axis], b.bbox[axis + 2]
    return -1 if a_hi < b_lo else (1 if b_hi < a_lo else 0)


def _left_right(m: _Maker) -> list[SpatialQuestion]:
    """Per pair apart in the image's columns: a choice question and the yes/no question for
    both sides, so every pair offers either yes/no answer to `AnswerBalance`."""
    out = []
    for a, b in m.pairs():
        order = _apart(a, b, 0)
        if order == 0:
            continue
        side = m.rng.choice(("left", "right"))
        truth = a if (order < 0) == (side == "left") else b
        stem = m.template("left_right_choice", a=a.name, b=b.name, side=side)
        out.append(m.pair_choice("left_right", stem, a, b, truth))
        for side in ("left", "right"):
            stem = m.template("left_right_yesno", a=a.name, b=b.name, side=side)
            out.append(m.yes_no("left_right", stem, (order < 0) == (side == "left"), objects=_ids(a, b)))
    return out


def _above_below(m: _Maker) -> list[SpatialQuestion]:
    """Per pair apart in the image's rows: the question for both relations, so every pair offers
    either answer to `AnswerBalance`."""
    out = []
    for a, b in m.pairs():
        order = _apart(a, b, 1)
        if order == 0:
            continue
        for relation in ("above", "below"):
            stem = m.template("above_below", a=a.name, b=b.name, relation=relation)
            out.append(
                m.yes_no("above_below", stem, (order < 0) == (relation == "above"), objects=_ids(a, b))
            )
    return out


def _occlusion(m: _Maker) -> list[SpatialQuestion]:
    out = []
    for o in m.referable:
        if o.occlusion >= OCCLUDED or o.visible_pixels == o.projected_pixels:
            out.append(
                m.yes_no(
                    "occlusion", m.template("occlusion", a=o.name), o.occlusion >= OCCLUDED, objects=_ids(o)
                )
            )
    return out


def _existence(m: _Maker) -> list[SpatialQuestion]:
    present = [
        m.yes_no("existence", m.template("existence", a=article(o.name)), True, objects=_ids(o))
        for o in m.referable
    ]
    taken = {(o.colour, o.shape) for o in m.scene.objects}
    free = [f"{c} {s}" for c in COLOURS for s in SHAPES if (c, s) not in taken]
    absent = [
        m.yes_no("existence", m.template("existence", a=article(name)), False)
        for name in m.rng.sample(free, min(len(free), max(1, len(present))))
    ]
    return present + absent


def _unique(m: _Maker, attribute: str) -> list[SceneObject]:
    """Referable objects whose `attribute` value no other object in the scene shares."""
    values = [getattr(o, attribute) for o in m.scene.objects]
    return [o for o in m.referable if values.count(getattr(o, attribute)) == 1]


def _colour(m: _Maker) -> list[SpatialQuestion]:
    out = []
    for o in _unique(m, "shape"):
        options = [o.colour, *m.rng.sample([c for c in COLOURS if c != o.colour], 3)]
        out.append(
            m.choice("colour", m.template("colour", shape=o.shape), options, o.colour, objects=_ids(o))
        )
    return out


def _shape(m: _Maker) -> list[SpatialQuestion]:
    return [
        m.choice("shape", m.template("shape", colour=o.colour), list(SHAPES), o.shape, objects=_ids(o))
        for o in _unique(m, "colour")
    ]


_MAKERS = {
    "relative_depth": _relative_depth,
    "closest_object": _closest_object,
    "distance_camera": _distance_camera,
    "distance_between": _distance_between,
    "height": _height,
    "width": _width,
    "size_compare": _size_compare,
    "count_shape": _count_shape,
    "count_colour": _count_colour,
    "left_right": _left_right,
    "above_below": _above_below,
    "occlusion": _occlusion,
    "shape": _shape,
    "existence": _existence,
    "colour": _colour,
}


class AnswerBalance:
    """Answer tallies over a whole dataset, so yes/no answers come out even and counts spread.

    Pass one instance to every `make_qa` call of a dataset (the writer and the rendered synthetic
    benchmark do). Per category, a yes/no question is drawn with the answer given less often so
    far; when a scene has no question with that answer and the other answer is already ahead, the
    scene asks none of that category's yes/no questions (a category whose "yes" is rare, such as
    occlusion, is asked less often instead of mostly answered "no"). A count question is drawn with
    the count given least often so far among those the scene offers. Other questions are drawn as
    without a balance.
    """

    def __init__(self) -> None:
        self.tally: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def record(self, questions: list[SpatialQuestion]) -> None:
        """Count the answers of `questions` (the ones a dataset keeps)."""
        for q in questions:
            self.tally[(q.category, q.answer_type)][q.answer] += 1

    def target(self, rng: random.Random, category: str, pool: list[SpatialQuestion]) -> str | None:
        """The answer to draw next from `pool` (one category's candidates), or None to draw none."""
        kinds = {q.answer_type for q in pool}
        kind = rng.choice(sorted(kinds))
        present = sorted({q.answer for q in pool if q.answer_type == kind})
        tally = self.tally[(category, kind)]
        if kind == "yes_no":
            fewest = min(tally["yes"], tally["no"])
            wanted = [a for a in ("yes", "no") if tally[a] == fewest]
            if not set(wanted) & set(present):
                return None  # only the answer that is ahead is on offer
            return rng.choice([a for a in wanted if a in present])
        if kind == "integer":
            fewest = min(tally[a] for a in present)
            return rng.choice([a for a in present if tally[a] == fewest])
        return rng.choice(present)


def _pick(
    rng: random.Random, candidates: list[SpatialQuestion], k: int, balance: AnswerBalance | None = None
) -> list[SpatialQuestion]:
    """Draw up to k questions, each by first drawing an answer among those present (with `balance`:
    the answer it asks for), so yes/no and count answers come out balanced rather than following
    how often each occurs in a scene. A drawn question takes the other phrasings about the same
    objects out of the pool: no pair is asked twice."""
    pool, chosen = list(candidates), []
    while pool and len(chosen) < k:
        if balance is None:
            answer = rng.choice(sorted({q.answer for q in pool}))
        else:
            answer = balance.target(rng, pool[0].category, pool)
            if answer is None:
                break
        question = rng.choice([q for q in pool if q.answer == answer])
        pool = [
            q
            for q in pool
            if q is not question and (not q.objects or set(q.objects) != set(question.objects))
        ]
        chosen.append(question)
    return chosen


def check_answer_types(answer_types: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """`answer_types` checked (known categories, known non-empty answer types) and copied."""
    checked = {}
    for category, types in (answer_types or {}).items():
        if category not in CATEGORY_INFO:
            raise ValueError(f"answer_types: unknown category {category!r}; expected names from {CATEGORIES}")
        if isinstance(types, str) or not types or not set(types) <= set(ANSWER_TYPES):
            raise ValueError(
                f"answer_types[{category!r}]: expected a non-empty list from {list(ANSWER_TYPES)}, got {types!r}"
            )
        checked[category] = tuple(types)
    return checked


def default_min_pixels(scene: SpatialScene) -> int:
    """Fewest visible pixels for an object to be asked about: 0.25% of the image, at least 8."""
    return max(8, scene.depth.numel() // 400)


def make_qa(
    scene: SpatialScene,
    seed: int | random.Random = 0,
    *,
    categories: tuple[str, ...] | list[str] | None = None,
    per_category: int = 1,
    max_questions: int | None = None,
    min_pixels: int | None = None,
    balance: AnswerBalance | None = None,
    answer_style: str = "full",
    answer_types: Mapping[str, Sequence[str]] | None = None,
) -> list[SpatialQuestion]:
    """Questions about `scene` with exact answers, deterministic for a given seed.

    Args:
        scene: a rendered scene.
        seed: an int or a `random.Random` (templates, pairs, letters and units are drawn from it).
        categories: which of `CATEGORIES` to ask (default: all). Categories a scene cannot support
            (e.g. size comparison with one object) are skipped.
        per_category: questions drawn per category (fewer when the scene offers fewer).
        max_questions: keep at most this many, drawn at random over categories.
        min_pixels: fewest visible pixels of an object to be asked about (`default_min_pixels`).
        balance: an `AnswerBalance` shared by the calls of one dataset: yes/no answers even and
            counts spread over the dataset (without it each scene is balanced on its own, so a
            dataset follows how often each answer occurs).
        answer_style: one of `ANSWER_STYLES`; "short" gives every number answer in metres with
            one decimal ("2.4"; `value` keeps the two-decimal truth the scores use); "short_text"
            also answers choice questions with the option's text.
        answer_types: per category, the answer types it may ask ("choice", "yes_no", "number",
            "integer"); a category not named asks all of its own. E.g. ``{"relative_depth":
            ["yes_no"]}`` drops relative depth's choice form, whose answer is an object's name.
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    categories = CATEGORIES if categories is None else tuple(categories)
    unknown = [c for c in categories if c not in CATEGORY_INFO]
    if unknown:
        raise ValueError(f"categories: unknown {unknown}; expected names from {CATEGORIES}")
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer_style: expected one of {ANSWER_STYLES}, got {answer_style!r}")
    if per_category < 1:
        raise ValueError(f"per_category: expected >= 1, got {per_category}")
    answer_types = check_answer_types(answer_types)
    maker = _Maker(scene, rng, default_min_pixels(scene) if min_pixels is None else min_pixels, answer_style)
    questions: list[SpatialQuestion] = []
    for category in categories:
        candidates = _MAKERS[category](maker)
        if category in answer_types:
            candidates = [q for q in candidates if q.answer_type in answer_types[category]]
        questions += _pick(rng, candidates, per_category, balance)
    if max_questions is not None and len(questions) > max_questions:
        keep = sorted(rng.sample(range(len(questions)), max_questions))
        questions = [questions[i] for i in keep]
    if balance is not None:
        balance.record(questions)
    return questions
