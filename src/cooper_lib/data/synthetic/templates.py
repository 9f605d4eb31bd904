"""Paraphrase templates of the spatial questions, per category (picked with the question's seed).

Placeholders: {a}, {b} object names ("red sphere"; with its article, "an orange box", in
existence questions), {shapes} a plural shape, {colour}, {shape}, and the relation words {rel},
{extreme}, {side}, {relation}.
Distances are between object centres and to the camera centre; the templates say so.
"""

from __future__ import annotations

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "relative_depth_choice": (
        "Which is {rel} the camera: the {a} or the {b}?",
        "Of the {a} and the {b}, which one is {rel} the camera?",
        "Looking at the {a} and the {b}, which object is {rel} the viewer?",
        "Which of the two objects is {rel} the camera, the {a} or the {b}?",
    ),
    "relative_depth_yesno": (
        "Is the {a} {rel} the camera than the {b}?",
        "Compared with the {b}, is the {a} {rel} the camera?",
        "Is the {a} {rel} the viewer than the {b} is?",
    ),
    "closest_object": (
        "Which of these objects is {extreme} the camera?",
        "Which object is {extreme} the viewer?",
        "Among the following objects, which one is {extreme} the camera?",
    ),
    "distance_camera": (
        "How far is the centre of the {a} from the camera?",
        "What is the distance from the camera to the centre of the {a}?",
        "Estimate the distance between the camera and the centre of the {a}.",
        "How far away from the camera is the {a}, measured to its centre?",
    ),
    "distance_between": (
        "How far apart are the centres of the {a} and the {b}?",
        "What is the distance between the centre of the {a} and the centre of the {b}?",
        "Estimate the centre-to-centre distance between the {a} and the {b}.",
    ),
    "height": (
        "How tall is the {a}?",
        "What is the height of the {a}?",
        "Estimate the height of the {a}.",
        "How high is the {a} from the ground to its top?",
    ),
    "width": (
        "How wide is the {a}?",
        "What is the diameter of the {a}?",
        "Estimate the width of the {a}.",
    ),
    "size_compare": (
        "Which is taller: the {a} or the {b}?",
        "Of the {a} and the {b}, which one is taller?",
        "Which object has the greater height, the {a} or the {b}?",
    ),
    "count_shape": (
        "How many {shapes} are there in the image?",
        "Count the {shapes} in the scene.",
        "How many {shapes} can you see?",
        "What is the number of {shapes} in the picture?",
    ),
    "count_colour": (
        "How many {colour} objects are there in the image?",
        "Count the {colour} objects in the scene.",
        "How many objects in the picture are {colour}?",
    ),
    "left_right_yesno": (
        "In the image, is the {a} to the {side} of the {b}?",
        "Is the {a} on the {side} side of the {b} from the camera's point of view?",
        "Seen from the camera, is the {a} to the {side} of the {b}?",
    ),
    "left_right_choice": (
        "Which object is further to the {side} in the image: the {a} or the {b}?",
        "Of the {a} and the {b}, which one appears more to the {side} in the image?",
        "Looking at the picture, which is closer to its {side} edge, the {a} or the {b}?",
    ),
    "above_below": (
        "In the image, is the {a} {relation} the {b}?",
        "Does the {a} appear {relation} the {b} in the picture?",
        "Looking at the image, is the {a} located {relation} the {b}?",
    ),
    "occlusion": (
        "Is the {a} partly hidden behind another object?",
        "Is part of the {a} occluded by something in front of it?",
        "Does another object block part of the {a} from view?",
    ),
    "existence": (
        "Is there {a} in the image?",
        "Does the scene contain {a}?",
        "Can you see {a} in the picture?",
    ),
    "colour": (
        "What colour is the {shape}?",
        "Which colour does the {shape} have?",
        "What is the colour of the {shape} in the image?",
    ),
    "shape": (
        "What shape is the {colour} object?",
        "Which shape does the {colour} object have?",
        "The {colour} object in the image is which kind of shape?",
    ),
}

ANSWER_INSTRUCTIONS: dict[str, str] = {
    "choice": "Answer with the option's letter.",
    "choice_text": "Answer with the option's text.",
    "yes_no": "Answer yes or no.",
    "integer": "Answer with a number.",
    "m": "Answer in metres.",
    "cm": "Answer in centimetres.",
}
"""Appended to every question, by answer type (number questions by unit; ``choice_text`` for choice
questions answered with the option's text)."""

PLURALS: dict[str, str] = {"sphere": "spheres", "box": "boxes", "cylinder": "cylinders", "cone": "cones"}
