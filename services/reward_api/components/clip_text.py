"""``clip_text``: CLIP similarity of the render to the text prompt (RLRF Text2SVG).

``r = cos(image embedding, text embedding)``, not rescaled: raw CLIP cosines of matching pairs sit
around 0.25-0.35, and GRPO normalises rewards within each group, so a rescale (CLIPScore's
``2.5·max(cos, 0)``) would change nothing but the logged numbers. On Text2SVG groups every
``<text>``/``<tspan>``/``<textPath>`` is removed before rendering (flag ``text_removed``): writing
the prompt as text would otherwise win this reward. Without a prompt it does not apply.
"""

from __future__ import annotations

from services.reward_api.components.base import Sample, cosine

NAME = "clip_text"
RANGE = (-1.0, 1.0)
STAGE = "model"
FEATURES = ("clip_image",)
REFERENCE_FEATURES = ("clip_text",)
APPLIES_WITH = {"prompt"}  # compared with the prompt, never with the reference image
STRIPS_TEXT = True  # writing the prompt as <text> would win it


def compute(candidate: Sample, reference: Sample) -> float | None:
    if "clip_text" not in reference.features:
        return None
    return cosine(candidate.features["clip_image"], reference.features["clip_text"])
