"""The tiles' P(yes) drawn over the slide's thumbnail, with a colour-scale legend.

Colours follow viridis (dark violet at 0, yellow at 1), which reads in greyscale and for
colour-blind readers; tiles at or above the threshold get a white outline. With triage bands the
outlines show the bands instead: red (2 px) around rule-in tiles, white around referred ones,
none around rule-out ones, and the legend marks both thresholds. Tiles the model did not answer
(answer mass below MIN_ANSWER_MASS) are grey, off the scale: their P(yes) means nothing. Tiles
that were not scored (background) stay as the thumbnail shows them.
"""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# viridis at 0, 0.25, 0.5, 0.75, 1
_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)
OPACITY = 0.55
UNANSWERED = (128, 128, 128)
OUTLINES = {"rule-in": ((230, 0, 0, 255), 2), "refer": ((255, 255, 255, 255), 1)}  # band → (colour, width)
LEGEND_HEIGHT = 56


def colour(probability: float) -> tuple[int, int, int]:
    position = min(max(probability, 0.0), 1.0) * (len(_ANCHORS) - 1)
    low = min(int(position), len(_ANCHORS) - 2)
    mix = position - low
    rgb = _ANCHORS[low] * (1 - mix) + _ANCHORS[low + 1] * mix
    return tuple(int(round(c)) for c in rgb)


def overlay(
    thumbnail: Image.Image, slide_size: tuple[int, int], tiles, probabilities, threshold: float,
    answered: list[bool] | None = None, bands: list[str] | None = None,
) -> Image.Image:
    """The thumbnail with each scored tile tinted by its P(yes), or grey where the model did not
    answer (`answered` False), outlined by its triage band when `bands` are given; same size as
    the thumbnail."""
    scale_x, scale_y = thumbnail.width / slide_size[0], thumbnail.height / slide_size[1]
    tint = Image.new("RGBA", thumbnail.size, (0, 0, 0, 0))
    outlines = ImageDraw.Draw(tint)
    boxes = []
    answered = answered if answered is not None else [True] * len(tiles)
    for i, (tile, probability, answer) in enumerate(zip(tiles, probabilities, answered, strict=True)):
        box = (
            round(tile.x * scale_x), round(tile.y * scale_y),
            max(round(tile.x * scale_x), round((tile.x + tile.size) * scale_x) - 1),
            max(round(tile.y * scale_y), round((tile.y + tile.size) * scale_y) - 1),
        )
        outlines.rectangle(box, fill=(*(colour(probability) if answer else UNANSWERED), round(255 * OPACITY)))
        if bands is not None:
            if bands[i] in OUTLINES:
                boxes.append((box, *OUTLINES[bands[i]]))
        elif answer and probability >= threshold:
            boxes.append((box, *OUTLINES["refer"]))
    boxes.sort(key=lambda outline: outline[2])  # red over white where two tiles share an edge
    for box, edge, width in boxes:  # after the fills, so a neighbour's fill never hides an outline
        outlines.rectangle(box, outline=edge, width=width)
    return Image.alpha_composite(thumbnail.convert("RGBA"), tint).convert("RGB")


def with_legend(image: Image.Image, threshold: float, note: str, triage=None) -> Image.Image:
    """`image` above a strip: the colour scale from 0 to 1, the threshold marked (or, with
    `triage`, both triage thresholds and what the outlines mean), and `note`."""
    width = max(image.width, 320)
    out = Image.new("RGB", (width, image.height + LEGEND_HEIGHT), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=12)
    top, left, right = image.height + 8, 10, width - 10
    bar = np.array([colour(i / (right - left - 1)) for i in range(right - left)], dtype=np.uint8)
    out.paste(Image.fromarray(np.repeat(bar[None], 12, axis=0)), (left, top))
    draw.rectangle((left, top, right - 1, top + 11), outline=(60, 60, 60))
    draw.text((left, top + 16), "0", fill="black", font=font)
    draw.text((right, top + 16), "1", fill="black", font=font, anchor="ra")
    marks = {f"threshold {threshold:g}": threshold} if triage is None else {
        f"rule-out < {triage.rule_out:.4g}": triage.rule_out, f"rule-in > {triage.rule_in:.4g}": triage.rule_in}
    for n, (label, value) in enumerate(marks.items()):
        marker = left + round(value * (right - left - 1))
        draw.line((marker, top - 3, marker, top + 14), fill=(200, 0, 0), width=2)
        anchor = "ma" if len(marks) == 1 else ("ra" if n == 0 else "la")  # two labels part ways, never overlap
        draw.text((marker, top + 16), label, fill=(200, 0, 0), font=font, anchor=anchor)
    if triage is not None:
        note = "outlined: red rule-in (review first), white refer. " + note
    draw.text((left, top + 31), note, fill=(60, 60, 60), font=font)
    return out


def png(image: Image.Image) -> bytes:
    """256 colours: a photo of tissue as true-colour PNG is ~2.5x larger, and looks the same here."""
    buffer = io.BytesIO()
    image.quantize(256, dither=Image.Dither.NONE).save(buffer, format="PNG")
    return buffer.getvalue()
