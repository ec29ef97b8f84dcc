"""Evaluate the deployed model on a labelled folder of H&E tiles.

    python -m healer.evaluate FOLDER [--positive TUM] [--negative NORM,STR] [--ignore BACK]
                                     [--calibrate OTHER_FOLDER | --threshold T]

FOLDER holds one sub-folder per class (NCT-CRC-HE-100K / CRC-VAL-HE-7K layout). The model is loaded
exactly as the service loads it (MODEL_DIR, QUANTIZATION, DEVICE from the environment) and asked
the service's question in answer-only mode. Writes results.csv, metrics.json and roc.png to --out;
prints sensitivity, specificity, balanced accuracy and ROC AUC with bootstrap 95 % intervals at
the threshold chosen for --target-sensitivity (on FOLDER itself, which makes the figures
optimistic and says so; on --calibrate's folder, which does not; or given with --threshold), then
the THRESHOLD= line for the service, always a value the service accepts. Expected failures (empty folder, unknown class, missing model) exit with status 1 and
one line on stderr.
"""

import argparse
import json
import math
import sys
from dataclasses import asdict
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

from healer.evaluation import metrics as roc
from healer.evaluation.options import add_class_options, fraction, positive_int, run_command
from healer.evaluation.folder import EvaluationError, LabelledFolder, label_folder, score_tiles, write_csv
from healer.model.adapter import AdapterError
from healer.model.model_dir import ModelDirError
from healer.text.prompts import DEFAULT_QUESTION, DEMO_WARNING
from healer.errors import EngineStartError, EngineTimedOut, EngineUnavailable
from healer.evaluation.plot import draw_roc
from healer.settings import Settings

THRESHOLD_DECIMALS = 4


def _threshold(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:  # as THRESHOLD: 0 calls every tile positive, 1 almost none
        raise argparse.ArgumentTypeError("must be between 0 and 1, both excluded")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m healer.evaluate",
        description="Sensitivity, specificity, balanced accuracy and ROC AUC of the deployed model "
        "on a folder with one sub-folder of tiles per class.",
    )
    parser.add_argument("folder", type=Path, help="one sub-folder per class, e.g. CRC-VAL-HE-7K/")
    add_class_options(parser)
    operating = parser.add_mutually_exclusive_group()
    operating.add_argument("--target-sensitivity", type=fraction, default=0.95, metavar="S",
                           help="choose the highest threshold whose sensitivity is >= S (default 0.95)")
    operating.add_argument("--threshold", type=_threshold, default=None, metavar="T",
                           help="report at this fixed threshold instead (e.g. one chosen on another set)")
    operating.add_argument("--calibrate", type=Path, default=None, metavar="FOLDER",
                           help="choose the threshold for --target-sensitivity on this other folder "
                           "(same layout and classes) and report on FOLDER")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="tiles per forward pass (default: MAX_BATCH_SIZE, as the service)")
    parser.add_argument("--bootstrap", type=_non_negative, default=1000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals (default 1000; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="default: the service's question")
    parser.add_argument("--out", type=Path, default=Path("evaluation"),
                        help="folder for results.csv, metrics.json and roc.png (default: evaluation/)")
    parser.add_argument("--adapter", type=Path, default=None, metavar="ADAPTER_DIR",
                        help="a fine-tuned adapter (healer.finetune) on the base, as the service "
                        "serves it (default: the ADAPTER_DIR setting)")
    parser.add_argument("--compare-base", action="store_true",
                        help="with an adapter: also score the base model alone and print both")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def round_down(threshold: float, decimals: int = THRESHOLD_DECIMALS) -> float:
    """The largest `decimals`-place number <= threshold: every tile at or above the chosen
    threshold stays at or above the printed one, so the sensitivity target still holds."""
    # Decimal, not floor(t * 10**4): 0.3712 * 10**4 is 3711.9999999999995 in binary floating point.
    # repr() is the shortest decimal that reads back as `threshold`, and rounding is monotonic.
    step = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(threshold)).quantize(step, rounding=ROUND_FLOOR))


def service_threshold(chosen: float) -> float:
    """The chosen threshold as THRESHOLD= accepts it (strictly between 0 and 1), never above it:
    rounded down to 4 decimals; 0.9999 when that is 1 (P(yes) saturates at 1.0 past a log-odds
    gap of ~37 even in float64); the chosen value itself when rounding would reach 0."""
    rounded = round_down(chosen)
    if rounded >= 1:
        return 1 - 10.0 ** -THRESHOLD_DECIMALS
    if rounded <= 0:
        return chosen if chosen > 0 else math.ulp(0.0)
    return rounded


def show(threshold: float) -> str:
    """The threshold as THRESHOLD= must spell it: 4 decimals when exact, else in full."""
    short = f"{threshold:.{THRESHOLD_DECIMALS}f}"
    return short if float(short) == threshold else repr(threshold)


def _banner(message: str) -> None:
    for line in ("=" * 72, message, "=" * 72):
        print(line, file=sys.stderr)


def _describe(folder: LabelledFolder) -> str:
    def counts(names):
        return ", ".join(f"{name} ({sum(t.cls == name for t in folder.tiles)})" for name in names)

    skipped = ", ".join(f"{name} ({n})" for name, n in folder.skipped.items()) or "none"
    return (f"positive: {counts(folder.positive)}\n"
            f"negative: {counts(folder.negative)}\n"
            f"skipped classes: {skipped}")


def _score(engine, folder: LabelledFolder, args, settings: Settings):
    scored, unreadable = score_tiles(
        engine, folder.tiles, args.question, args.batch_size or settings.max_batch_size,
        settings.max_image_pixels, progress=not args.no_progress,
    )
    for path, reason in unreadable.items():
        print(f"warning: skipped unreadable {path}: {reason}", file=sys.stderr)
    labels = [row.tile.label for row in scored]
    if 1 not in labels or 0 not in labels:
        raise EvaluationError(f"after skipping unreadable files in {folder.root}, one class of label has no tile left")
    return scored, unreadable, labels, [row.probability for row in scored]


def evaluate(args: argparse.Namespace, settings: Settings) -> int:
    folder = label_folder(args.folder, args.positive, args.negative, args.ignore)
    print(f"folder: {folder.root}\n{_describe(folder)}")
    calibration = None
    if args.calibrate is not None:
        calibration = label_folder(args.calibrate, args.positive, args.negative, args.ignore)
        print(f"calibration folder: {calibration.root}\n{_describe(calibration)}")

    from healer.model.load import open_engine  # torch (or the openai SDK) loads only once the folder is known good

    if args.adapter is not None:
        settings = settings.model_copy(update={"adapter_dir": args.adapter})
    engine = open_engine(settings)
    info = engine.info
    if info.demo:
        _banner(DEMO_WARNING + " These metrics are meaningless.")
    print(f"model: {info.id} (revision {info.revision or 'unknown'}) on {info.device}, "
          f"quantization {info.quantization}{', DEMO' if info.demo else ''}"
          f"{f', adapter {info.adapter.name} ({info.adapter.sha256})' if info.adapter else ''}")

    scored, unreadable, labels, scores = _score(engine, folder, args, settings)
    args.out.mkdir(parents=True, exist_ok=True)

    optimistic = False
    if args.threshold is not None:
        threshold = args.threshold
        how = "given with --threshold"
    else:
        if calibration is not None:
            _, _, chosen_on_labels, chosen_on_scores = _score(engine, calibration, args, settings)
            where = f"on {calibration.root}"
        else:
            chosen_on_labels, chosen_on_scores, where = labels, scores, "on these same tiles"
            optimistic = True
        chosen = roc.threshold_for_sensitivity(chosen_on_labels, chosen_on_scores, args.target_sensitivity)
        threshold = service_threshold(chosen)
        how = (f"chosen {where}: the highest with sensitivity >= {args.target_sensitivity:g} is {chosen:.6f}, "
               f"as THRESHOLD accepts it (rounded down to {THRESHOLD_DECIMALS} decimals, below 1)")
    write_csv(scored, folder.root, args.out / "results.csv", threshold, settings.min_answer_mass)
    counts = roc.confusion(labels, scores, threshold)
    summary = roc.summarise(labels, scores, threshold, args.bootstrap, args.seed)
    masses = [row.answer_mass for row in scored]
    below = sum(mass < settings.min_answer_mass for mass in masses)

    interval = f"95% CI ({args.bootstrap} bootstrap resamples, seed {args.seed})" if args.bootstrap else "no bootstrap"
    print(f"\n{len(scored)} tiles: {counts.tp + counts.fn} positive, {counts.tn + counts.fp} negative; "
          f"{len(unreadable)} unreadable skipped")
    print(f"answer mass: median {sorted(masses)[len(masses) // 2]:.3f}; {below} tile(s) below "
          f"MIN_ANSWER_MASS {settings.min_answer_mass:g} (answered \"uncertain\" by /predict)")
    print(f"threshold: P(yes) >= {show(threshold)}: {how}")
    print(f"TP {counts.tp}  FN {counts.fn}  TN {counts.tn}  FP {counts.fp}\n")
    print(f"| metric | value | {interval} |\n|---|---|---|")
    for name, estimate in summary.items():
        print(f"| {name.replace('_', ' ')} | {estimate.value:.3f} | {estimate.low:.3f} – {estimate.high:.3f} |")
    if optimistic:
        print("\nOPTIMISTIC: the threshold was chosen and reported on the same tiles; choose it on "
              "another folder with --calibrate FOLDER for figures that hold on new tiles.")

    fpr, tpr, _ = roc.roc_curve(labels, scores)
    title = "ROC curve" + (" - DEMO MODEL, MEANINGLESS" if info.demo else f" - {info.id}")
    point_label = (f"P(yes) >= {show(threshold)}: sens {counts.sensitivity:.2f}, "
                   f"spec {counts.specificity:.2f}")
    plot = draw_roc(fpr, tpr, summary["roc_auc"].value, (1 - counts.specificity, counts.sensitivity),
                    point_label, args.out / "roc.png", title=title)
    report = {
        "model": asdict(info),
        "folder": str(folder.root),
        "calibration_folder": str(calibration.root) if calibration else None,
        "positive": folder.positive, "negative": folder.negative, "skipped_classes": folder.skipped,
        "unreadable": [str(path) for path in unreadable],
        "threshold": threshold, "threshold_rule": how, "optimistic": optimistic,
        "answer_mass": {"min_answer_mass": settings.min_answer_mass, "tiles_below": below},
        "confusion": vars(counts),
        "metrics": {name: vars(estimate) for name, estimate in summary.items()},
        "bootstrap": {"resamples": args.bootstrap, "seed": args.seed, "stratified": True},
    }
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out / 'results.csv'}, {args.out / 'metrics.json'}, {plot}")
    if info.demo:
        _banner("DEMO MODEL: the numbers above are meaningless; do not deploy this threshold.")
    print(f"At this threshold: sensitivity {counts.sensitivity:.3f}, specificity {counts.specificity:.3f}. "
          "Set it for /predict (positive when P(yes) >= THRESHOLD):")
    print(f"THRESHOLD={show(threshold)}")
    if args.compare_base and info.adapter:
        _compare_with_base(args, settings, folder, labels, scores, threshold)
    return 0


def _compare_with_base(args, settings: Settings, folder: LabelledFolder, labels, scores, threshold: float) -> None:
    """The same tiles through the base model alone: before and after fine-tuning, one table."""
    from healer.model.medgemma import MedGemmaEngine

    base = MedGemmaEngine.load(settings.model_copy(update={"adapter_dir": None}))
    scored, _ = score_tiles(base, folder.tiles, args.question,
                            args.batch_size or settings.max_batch_size, settings.max_image_pixels,
                            progress=not args.no_progress)
    rows = {"base model": ([r.tile.label for r in scored], [r.probability for r in scored]),
            f"with adapter {Path(settings.adapter_dir).name}": (labels, scores)}
    print(f"\nbefore and after, at P(yes) >= {show(threshold)}:\n| model | ROC AUC | sensitivity | specificity |\n|---|---|---|---|")
    for name, (truth, probability) in rows.items():
        counts = roc.confusion(truth, probability, threshold)
        print(f"| {name} | {roc.roc_auc(truth, probability):.3f} | {counts.sensitivity:.3f} | {counts.specificity:.3f} |")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("evaluate", lambda settings: evaluate(args, settings), (EvaluationError, ModelDirError, AdapterError,
                                                                            EngineStartError, EngineUnavailable, EngineTimedOut))


if __name__ == "__main__":
    sys.exit(main())
