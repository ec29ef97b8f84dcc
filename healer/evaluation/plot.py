"""The ROC curve as a small PNG, drawn with Pillow (no plotting library needed for one chart).

Axes with ticks every 0.2, the chance diagonal, the curve, the AUC in the legend and the chosen
operating point marked with a red dot.
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
