"""ToyWorld's prompts: "a {colour} {shape}", optionally ", {view} view".

The colour table is the one place the true RGB values live. Prompts are compared after
lower-casing and collapsing whitespace, so "A  Red cube" is "a red cube".
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ssd3d.errors import SSD3DError
from ssd3d.scene.cameras import VIEW_LABELS  # "front", "side", "back", "overhead"
from ssd3d.toyworld.shapes import SHAPES

# True albedo in linear RGB [0, 1]. Saturated but not at 0/1, so every pair differs by more
# than 0.4 in L2 and none is confused with a white or black background.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.15),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.85),
    "yellow": (0.90, 0.80, 0.10),
    "purple": (0.55, 0.20, 0.75),
}

_PROMPT = re.compile(r"^a (?P<colour>\w+) (?P<shape>[\w-]+)(?:, (?P<view>\w+) view)?$")


class Prompt(NamedTuple):
    """A parsed ToyWorld prompt."""

    shape: str  # one of SHAPES
    colour: str  # one of COLOURS
    view: str | None  # one of VIEW_LABELS, or None without a view suffix

    @property
    def base(self) -> str:
        """The prompt without its view suffix."""
        return make_prompt(self.shape, self.colour)


def make_prompt(shape: str, colour: str, view: str | None = None) -> str:
    """The prompt "a {colour} {shape}", with ", {view} view" appended when a view is given."""
    return f"a {colour} {shape}" + (f", {view} view" if view else "")


def normalise_prompt(prompt: str) -> str:
    """Lower-case with single spaces, the form prompts are compared in."""
    return " ".join(prompt.lower().split())


def vocabulary_text() -> str:
    """The vocabulary in one line, for error messages."""
    return (
        f"ToyWorld prompts are 'a {{colour}} {{shape}}[, {{view}} view]' with colour in "
        f"{'|'.join(COLOURS)}, shape in {'|'.join(SHAPES)}, view in {'|'.join(VIEW_LABELS)}"
    )


def parse_prompt(prompt: str) -> Prompt:
    """Parse "a red cube, front view" -> Prompt("cube", "red", "front"); SSD3DError if unknown."""
    m = _PROMPT.match(normalise_prompt(prompt))
    if (
        m is None
        or m["colour"] not in COLOURS
        or m["shape"] not in SHAPES
        or (m["view"] is not None and m["view"] not in VIEW_LABELS)
    ):
        raise SSD3DError(f"unknown prompt {prompt!r}: {vocabulary_text()}")
    return Prompt(m["shape"], m["colour"], m["view"])


def all_prompts() -> list[str]:
    """Every base prompt, shape-major in the order of SHAPES then COLOURS (fixed)."""
    return [make_prompt(s, c) for s in SHAPES for c in COLOURS]


def colour_rgb(colour: str) -> tuple[float, float, float]:
    """The true RGB of ``colour``; SSD3DError listing the colours otherwise."""
    if colour not in COLOURS:
        raise SSD3DError(f"unknown colour {colour!r}; ToyWorld colours: {', '.join(COLOURS)}")
    return COLOURS[colour]
