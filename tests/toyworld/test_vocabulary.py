import itertools

import pytest
import torch

from ssd3d.errors import SSD3DError
from ssd3d.scene.cameras import VIEW_LABELS
from ssd3d.toyworld.shapes import SHAPES
from ssd3d.toyworld.vocabulary import (
    COLOURS,
    Prompt,
    all_prompts,
    colour_rgb,
    make_prompt,
    parse_prompt,
)


def test_parse_plain_and_view_prompts():
    assert parse_prompt("a red cube") == Prompt("cube", "red", None)
    shape, colour, view = parse_prompt("a red cube, front view")
    assert (shape, colour, view) == ("cube", "red", "front")
    assert parse_prompt("  A Purple   MUG,  overhead view ") == Prompt("mug", "purple", "overhead")
    assert parse_prompt("a green wedge, back view").base == "a green wedge"


@pytest.mark.parametrize(
    "bad",
    ["a red dodecahedron", "an orange cube", "a red cube, diagonal view", "red cube", "", "a cube"],
)
def test_unknown_prompt_lists_the_vocabulary(bad):
    with pytest.raises(SSD3DError) as err:
        parse_prompt(bad)
    message = str(err.value)
    assert "\n" not in message
    assert all(s in message for s in SHAPES) and all(c in message for c in COLOURS)
    assert all(v in message for v in VIEW_LABELS)


def test_all_prompts_fixed_order_and_round_trip():
    prompts = all_prompts()
    assert len(prompts) == len(SHAPES) * len(COLOURS) == len(set(prompts))
    assert prompts[0] == make_prompt(SHAPES[0], next(iter(COLOURS)))
    assert prompts == all_prompts()
    for p in prompts:
        assert make_prompt(*parse_prompt(p)[:2]) == p
        for v in VIEW_LABELS:
            assert parse_prompt(make_prompt(*parse_prompt(p)[:2], v)).view == v


def test_colours_are_distinct():
    assert len(COLOURS) >= 5
    rgb = {c: torch.tensor(colour_rgb(c)) for c in COLOURS}
    for a, b in itertools.combinations(COLOURS, 2):
        assert (rgb[a] - rgb[b]).norm() > 0.4
    for v in rgb.values():
        assert (v >= 0).all() and (v <= 1).all()
