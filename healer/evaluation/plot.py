"""The evaluation's pictures as small PNGs, drawn with Pillow (no plotting library for two charts).

`draw_roc`: axes with ticks every 0.2, the chance diagonal, the curve, the AUC in the legend and the
chosen operating point marked with a red dot. `draw_bands`: the P(yes) histogram of each class over
the triage bands, each band shaded and labelled with the share of the class's tiles it takes.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SIZE = 640
LEFT, TOP, PLOT = 84, 56, 520  # the unit square is PLOT px wide, its top-left corner at LEFT, TOP
CURVE = (31, 90, 180)
POINT = (214, 39, 40)
GRID = (225, 225, 225)
CHANCE = (150, 150, 150)


def to_pixel(fpr: float, tpr: float) -> tuple[float, float]:
    return LEFT + fpr * PLOT, TOP + (1 - tpr) * PLOT


def _font(size: int):
    return ImageFont.load_default(size=size)


def draw_roc(
    fpr, tpr, auc: float, point: tuple[float, float], point_label: str, path: Path,
    title: str = "ROC curve",
) -> Path:
    """`point` is (1 − specificity, sensitivity) of the operating threshold."""
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    small, normal = _font(13), _font(15)

    for step in range(6):
        value = step / 5
        x, y = to_pixel(value, value)
        draw.line([(x, TOP), (x, TOP + PLOT)], fill=GRID)
        draw.line([(LEFT, y), (LEFT + PLOT, y)], fill=GRID)
        draw.text((x, TOP + PLOT + 6), f"{value:.1f}", fill="black", font=small, anchor="mt")
        draw.text((LEFT - 6, y), f"{value:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([LEFT, TOP, LEFT + PLOT, TOP + PLOT], outline="black")
    _dashed(draw, to_pixel(0, 0), to_pixel(1, 1), CHANCE)
    draw.line([to_pixel(x, y) for x, y in zip(fpr, tpr)], fill=CURVE, width=3, joint="curve")
    px, py = to_pixel(*point)
    draw.ellipse([px - 7, py - 7, px + 7, py + 7], fill=POINT, outline="black")

    draw.text((SIZE / 2, 22), title, fill="black", font=_font(17), anchor="mm")
    draw.text((LEFT + PLOT / 2, TOP + PLOT + 30), "False positive rate (1 - specificity)",
              fill="black", font=normal, anchor="mt")
    _vertical_text(image, "True positive rate (sensitivity)", normal, centre=(22, TOP + PLOT / 2))

    legend = [
        (CURVE, "line", f"ROC curve (AUC = {auc:.3f})"),
        (CHANCE, "dash", "chance"),
        (POINT, "dot", point_label),
    ]
    width = max(draw.textlength(text, font=small) for _, _, text in legend) + 48
    x0, y0 = LEFT + PLOT - width - 10, TOP + PLOT - 20 * len(legend) - 18
    draw.rectangle([x0, y0, LEFT + PLOT - 10, TOP + PLOT - 10], fill="white", outline=(120, 120, 120))
    for row, (colour, kind, text) in enumerate(legend):
        y = y0 + 14 + 20 * row
        if kind == "line":
            draw.line([(x0 + 8, y), (x0 + 32, y)], fill=colour, width=3)
        elif kind == "dash":
            _dashed(draw, (x0 + 8, y), (x0 + 32, y), colour)
        else:
            draw.ellipse([x0 + 14, y - 6, x0 + 26, y + 6], fill=colour, outline="black")
        draw.text((x0 + 40, y), text, fill="black", font=small, anchor="lm")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return path


BAND_SHADES = {"rule-out": (222, 241, 222), "refer": (253, 240, 205), "rule-in": (249, 219, 219)}
BINS = 50


def draw_bands(
    scores_by_class: dict[str, list[float]], rule_out: float, rule_in: float,
    shares: dict[str, dict[str, float]], path: Path, title: str = "Triage bands",
) -> Path:
    """One histogram of P(yes) per class ({"positive": [...], "negative": [...]}), one above the
    other on the same 0–1 axis, over the bands; `shares` is each class's share per band."""
    height = TOP + 40 + 200 * len(scores_by_class)
    image = Image.new("RGB", (SIZE, height), "white")
    draw = ImageDraw.Draw(image)
    small, normal = _font(13), _font(15)
    x = lambda p: LEFT + p * PLOT  # noqa: E731
    for row, (name, scores) in enumerate(scores_by_class.items()):
        top, bottom = TOP + 200 * row, TOP + 200 * row + 160
        for band, (a, b) in {"rule-out": (0, rule_out), "refer": (rule_out, rule_in), "rule-in": (rule_in, 1)}.items():
            draw.rectangle([x(a), top, x(b), bottom], fill=BAND_SHADES[band])
            share = shares[name][band]
            draw.text((x((a + b) / 2), top + 4), f"{share:.0%}", fill="black", font=small, anchor="mt")
        counts = [0] * BINS
        for score in scores:
            counts[min(int(score * BINS), BINS - 1)] += 1
        peak = max(counts) or 1
        for i, count in enumerate(counts):
            if count:
                draw.rectangle([x(i / BINS) + 1, bottom - 130 * count / peak, x((i + 1) / BINS) - 1, bottom], fill=CURVE)
        for threshold in (rule_out, rule_in):
            draw.line([(x(threshold), top), (x(threshold), bottom)], fill=POINT, width=2)
        draw.rectangle([LEFT, top, LEFT + PLOT, bottom], outline="black")
        draw.text((LEFT - 8, (top + bottom) / 2), f"{name}\n{len(scores)} tiles", fill="black", font=small,
                  anchor="rm", align="right")
        for step in range(6):
            draw.text((x(step / 5), bottom + 4), f"{step / 5:.1f}", fill="black", font=small, anchor="mt")
    draw.text((SIZE / 2, 22), title, fill="black", font=_font(17), anchor="mm")
    legend = (f"P(yes); red lines: rule-out < {rule_out:.4g}, rule-in > {rule_in:.4g}; "
              "green rule-out, amber refer, red rule-in")
    draw.text((SIZE / 2, height - 24), legend, fill="black", font=normal, anchor="mm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    return path


def _dashed(draw: ImageDraw.ImageDraw, start, end, colour, dash: float = 8) -> None:
    (x0, y0), (x1, y1) = start, end
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    steps = max(1, int(length // dash))
    for i in range(0, steps, 2):
        a, b = i / steps, min(1.0, (i + 1) / steps)
        draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                  fill=colour, width=2)


def _vertical_text(image: Image.Image, text: str, font, centre: tuple[float, float]) -> None:
    box = ImageDraw.Draw(image).textbbox((0, 0), text, font=font)
    label = Image.new("RGB", (box[2] + 4, box[3] + 4), "white")
    ImageDraw.Draw(label).text((2, 2), text, fill="black", font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (int(centre[0] - label.width / 2), int(centre[1] - label.height / 2)))
