"""Evaluate the deployed model on a labelled folder of H&E tiles.

    python -m healer.evaluate FOLDER [--positive TUM] [--negative NORM,STR] [--ignore BACK]
                                     [--calibrate OTHER_FOLDER | --threshold T]
                                     [--triage [--confidence C] [--target-specificity S]]

FOLDER holds one sub-folder per class (NCT-CRC-HE-100K / CRC-VAL-HE-7K layout). The model is loaded
exactly as the service loads it (MODEL_DIR, QUANTIZATION, DEVICE from the environment) and asked
the service's question in answer-only mode. Writes results.csv, metrics.json and roc.png to --out;
prints sensitivity, specificity, balanced accuracy and ROC AUC with bootstrap 95 % intervals at
the threshold chosen for --target-sensitivity (on FOLDER itself, which makes the figures
optimistic and says so; on --calibrate's folder, which does not; or given with --threshold), then
the THRESHOLD= line for the service, always a value the service accepts. With --triage it goes on
to the triage bands (healer.evaluation.triage): rule-out and rule-in thresholds with a guaranteed
sensitivity and specificity, calibrated on --calibrate's folder or else on FOLDER, the share of
FOLDER's tiles in each band, triage.json and triage.png, and ends with the TRIAGE_RULE_OUT= and
TRIAGE_RULE_IN= lines; too few calibration tiles for the guarantee asked is refused before any
tile is scored, saying how many it needs. Expected failures (empty folder, unknown class, missing model) exit with status 1 and
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
from healer.evaluation import triage
from healer.evaluation.guarantee import NotEnoughCalibration
from healer.evaluation.options import add_class_options, fraction, positive_int, run_command
from healer.evaluation.folder import EvaluationError, LabelledFolder, label_folder, score_tiles, write_csv
from healer.model.adapter import AdapterError
from healer.model.model_dir import ModelDirError
from healer.text.prompts import DEFAULT_QUESTION, DEMO_WARNING
from healer.errors import EngineStartError, EngineTimedOut, EngineUnavailable
from healer.evaluation.plot import draw_bands, draw_roc
from healer.settings import Settings

THRESHOLD_DECIMALS = 4
TARGET_SENSITIVITY = 0.95  # --target-sensitivity's default; with --triage…
TRIAGE_SENSITIVITY = 0.98  # …this: a rule-out band a lab can defend misses few tumours


def _threshold(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:  # as THRESHOLD: 0 calls every tile positive, 1 almost none
        raise argparse.ArgumentTypeError("must be between 0 and 1, both excluded")
    return value


def _open_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
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
    operating.add_argument("--target-sensitivity", type=fraction, default=None, metavar="S",
                           help="choose the highest threshold whose sensitivity is >= S (default 0.95); "
                           "with --triage, the sensitivity the rule-out band guarantees too (default 0.98)")
    operating.add_argument("--threshold", type=_threshold, default=None, metavar="T",
                           help="report at this fixed threshold instead (e.g. one chosen on another set)")
    operating.add_argument("--calibrate", type=Path, default=None, metavar="FOLDER",
                           help="choose the threshold for --target-sensitivity on this other folder "
                           "(same layout and classes) and report on FOLDER")
    bands = parser.add_argument_group("triage bands (docs/evaluation.md, \"Triage\")")
    bands.add_argument("--triage", action="store_true",
                       help="also choose rule-out / rule-in thresholds with a guaranteed sensitivity and "
                       "specificity, on --calibrate's folder or else on FOLDER; writes triage.json and triage.png")
    bands.add_argument("--target-specificity", type=fraction, default=0.95, metavar="S",
                       help="the specificity the rule-in band guarantees (default 0.95)")
    bands.add_argument("--confidence", type=_open_fraction, default=0.95, metavar="C",
                       help="the probability, over draws of the calibration set, that both guarantees "
                       "hold (default 0.95)")
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
    target = args.target_sensitivity or (TRIAGE_SENSITIVITY if args.triage else TARGET_SENSITIVITY)
    if args.triage:  # refused before the model loads: no scoring makes a small set big enough
        _enough_for_triage(calibration or folder, target, args)

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
    if calibration is not None:
        _, _, calibration_labels, calibration_scores = _score(engine, calibration, args, settings)
    if args.threshold is not None:
        threshold = args.threshold
        how = "given with --threshold"
    else:
        if calibration is not None:
            chosen_on_labels, chosen_on_scores = calibration_labels, calibration_scores
            where = f"on {calibration.root}"
        else:
            chosen_on_labels, chosen_on_scores, where = labels, scores, "on these same tiles"
            optimistic = True
        chosen = roc.threshold_for_sensitivity(chosen_on_labels, chosen_on_scores, target)
        threshold = service_threshold(chosen)
        how = (f"chosen {where}: the highest with sensitivity >= {target:g} is {chosen:.6f}, "
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
    if args.triage:
        on = (calibration_labels, calibration_scores, f"on {calibration.root}") if calibration else (
            labels, scores, "on these same tiles")
        _triage(args, target, on, labels, scores, [mass >= settings.min_answer_mass for mass in masses], info)
    return 0


def _enough_for_triage(calibration: LabelledFolder, sensitivity: float, args) -> None:
    positives = sum(tile.label for tile in calibration.tiles)
    try:
        triage.check_counts(positives, len(calibration.tiles) - positives, sensitivity,
                            args.target_specificity, args.confidence)
    except NotEnoughCalibration as error:
        raise NotEnoughCalibration(f"--triage on {calibration.root}: {error}") from None


def _triage(args, sensitivity: float, on, labels, scores, answered, info) -> None:
    """The bands chosen on the calibration tiles (`on`), then what they do to this folder's tiles."""
    calibration_labels, calibration_scores, where = on
    try:
        chosen = triage.calibrate(calibration_labels, calibration_scores, sensitivity, args.target_specificity,
                                  args.confidence)
    except NotEnoughCalibration as error:  # unreadable tiles left fewer than the folder held
        raise NotEnoughCalibration(f"--triage {where}, after skipping unreadable tiles: {error}") from None
    bands = triage.shares(labels, scores, answered, chosen.triage)
    print("\n" + "\n".join(triage.describe(chosen, where)))
    print(f"\nbands over {args.folder} (prevalence changes the 'all' column, not the others):")
    print("| band | positive tiles | negative tiles | all tiles |\n|---|---|---|---|")
    for band in bands["all"]:
        print(f"| {band} | {bands['positive'][band]:.1%} | {bands['negative'][band]:.1%} | {bands['all'][band]:.1%} |")
    print(f"realised here: sensitivity of the rule-out band {1 - bands['positive']['rule-out']:.3f}, "
          f"specificity of the rule-in band {1 - bands['negative']['rule-in']:.3f}")
    by_class = {"positive": [s for y, s in zip(labels, scores) if y == 1],
                "negative": [s for y, s in zip(labels, scores) if y == 0]}
    title = "Triage bands" + (" - DEMO MODEL, MEANINGLESS" if info.demo else f" - {info.id}")
    picture = draw_bands(by_class, chosen.triage.rule_out, chosen.triage.rule_in, bands, args.out / "triage.png", title)
    report = {
        "rule_out": chosen.triage.rule_out, "rule_in": chosen.triage.rule_in,
        "rule": "rule-out: P(yes) < rule_out; rule-in: P(yes) > rule_in; refer: between, both included, "
                "and every tile the model did not answer",
        "method": "order-statistic bound with an exact binomial tail (Wilks 1941; Bates et al. 2021)",
        "exact_rule_out": chosen.exact_rule_out, "exact_rule_in": chosen.exact_rule_in,
        "target_sensitivity": sensitivity, "target_specificity": args.target_specificity,
        "confidence": args.confidence, "crossed": chosen.crossed,
        "calibration": {"where": where, "positives": chosen.positives, "negatives": chosen.negatives,
                        "rule_out_rank": chosen.k_out, "rule_in_rank": chosen.k_in},
        "assumptions": triage.ASSUMPTIONS, "shares": bands, "folder": str(args.folder), "model": asdict(info),
    }
    (args.out / "triage.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'triage.json'} (TRIAGE_FILE for the service), {picture}")
    if info.demo:
        _banner("DEMO MODEL: these bands are meaningless; do not deploy them.")
    print(f"TRIAGE_RULE_OUT={triage.show(chosen.triage.rule_out)}")
    print(f"TRIAGE_RULE_IN={triage.show(chosen.triage.rule_in)}")


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
    return run_command("evaluate", lambda settings: evaluate(args, settings), (EvaluationError, NotEnoughCalibration, ModelDirError, AdapterError,
                                                                            EngineStartError, EngineUnavailable, EngineTimedOut))


if __name__ == "__main__":
    sys.exit(main())
