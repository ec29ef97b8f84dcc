"""Fine-tune the served model on a labelled folder of H&E tiles: a LoRA adapter for ADAPTER_DIR.

    python -m healer.finetune FOLDER --out ADAPTER_DIR [--positive TUM] [--negative NORM,STR] [--ignore BACK]

FOLDER has the layout `healer.evaluate` reads (one sub-folder per class). The base is the model
the service would load (MODEL_DIR, DEVICE from the environment). A validation split is held out
(by slide/patient when the file names tell); training stops early when the validation loss stops
improving. Writes the adapter (peft format), its card (healer-adapter.json) and the validation
ROC (roc.png) to --out. Expected failures exit with status 1 and one line on stderr.
"""

import argparse
import sys
from pathlib import Path

from healer.evaluate import round_down, show
from healer.evaluation import metrics as roc
from healer.evaluation.folder import EvaluationError, label_folder, score_tiles
from healer.evaluation.options import add_class_options, fraction, positive_int, run_command
from healer.evaluation.plot import draw_roc
from healer.finetuning.data import FinetuneError, class_counts, split
from healer.model.model_dir import ModelDirError
from healer.text.prompts import DEFAULT_QUESTION, DEMO_WARNING
from healer.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m healer.finetune",
        description="Teach the served model a lab's own labelled tiles with LoRA; writes an adapter "
        "for ADAPTER_DIR with its card and validation ROC.",
    )
    parser.add_argument("folder", type=Path, help="one sub-folder per class, e.g. NCT-CRC-HE-100K/")
    parser.add_argument("--out", type=Path, required=True, help="the adapter folder to write")
    add_class_options(parser)
    parser.add_argument("--epochs", type=positive_int, default=3, help="at most this many passes (default 3)")
    parser.add_argument("--batch-size", type=positive_int, default=4, metavar="N", help="tiles per step (default 4)")
    parser.add_argument("--learning-rate", type=float, default=2e-4, metavar="LR", help="AdamW (default 2e-4)")
    parser.add_argument("--rank", type=positive_int, default=8, help="LoRA rank (default 8; alpha is twice it)")
    parser.add_argument("--patience", type=positive_int, default=2,
                        help="stop after this many epochs without a better validation loss (default 2)")
    parser.add_argument("--validation-fraction", type=fraction, default=0.2, metavar="F",
                        help="share of tiles held out for validation (default 0.2)")
    parser.add_argument("--group-pattern", default=None, metavar="REGEX",
                        help="regex whose first group names a tile's slide or patient, so the split "
                        "keeps each on one side (default: TCGA patient barcodes, when every name has one)")
    parser.add_argument("--target-sensitivity", type=fraction, default=0.95, metavar="S",
                        help="the card's threshold: the highest with validation sensitivity >= S (default 0.95)")
    parser.add_argument("--low-memory", choices=["8bit", "4bit"], default=None,
                        help="CUDA only: load the frozen base quantized (QLoRA) when bf16 does not fit")
    parser.add_argument("--seed", type=int, default=0, help="split, shuffling and initialisation (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def finetune(args: argparse.Namespace, settings: Settings) -> int:
    folder = label_folder(args.folder, args.positive, args.negative, args.ignore)
    data = split(folder.tiles, args.validation_fraction, args.seed, args.group_pattern)
    print(f"folder: {folder.root}\ntraining: {class_counts(data.train)}\n"
          f"validation: {class_counts(data.validation)}\nsplit: {data.how}")

    from healer.finetuning.card import build_card, write_card  # torch loads once the data is known good
    from healer.finetuning.train import TrainConfig, load_base, train, with_lora

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         rank=args.rank, alpha=2 * args.rank, patience=args.patience, seed=args.seed,
                         low_memory=args.low_memory)
    import torch

    torch.manual_seed(args.seed)  # LoRA's initial matrices: the same seed, the same adapter
    engine = with_lora(load_base(settings, args.low_memory), config)
    info = engine.info
    if info.demo:
        print(DEMO_WARNING + " This adapter is meaningless outside tests.", file=sys.stderr)
    print(f"base: {info.id} (revision {info.revision or 'unknown'}) on {info.device}")
    history = train(engine, data.train, data.validation, DEFAULT_QUESTION, config, settings.max_image_pixels,
                    progress=not args.no_progress)

    scored, unreadable = score_tiles(engine, data.validation, DEFAULT_QUESTION, args.batch_size,
                                     settings.max_image_pixels, progress=False)
    labels, scores = [row.tile.label for row in scored], [row.probability for row in scored]
    threshold = round_down(roc.threshold_for_sensitivity(labels, scores, args.target_sensitivity))
    counts = roc.confusion(labels, scores, threshold)
    auc = roc.roc_auc(labels, scores)
    validation = {"tiles": len(scored), "roc_auc": auc, "sensitivity": counts.sensitivity,
                  "specificity": counts.specificity, "threshold": threshold,
                  "target_sensitivity": args.target_sensitivity, "confusion": vars(counts)}

    args.out.mkdir(parents=True, exist_ok=True)
    engine.model.save_pretrained(args.out)
    write_card(args.out, build_card(info, folder, data, DEFAULT_QUESTION, config, history, validation))
    fpr, tpr, _ = roc.roc_curve(labels, scores)
    title = "Validation ROC" + (" - DEMO MODEL, MEANINGLESS" if info.demo else f" - {info.id} + adapter")
    draw_roc(fpr, tpr, auc, (1 - counts.specificity, counts.sensitivity),
             f"P(yes) >= {show(threshold)}", args.out / "roc.png", title=title)
    memory = f", peak memory {history.peak_memory_gib:.2f} GiB" if history.peak_memory_gib is not None else ""
    print(f"\nbest epoch {history.best_epoch} of {history.epochs_run}; "
          f"{history.seconds_per_step:.2f} s per step{memory}")
    print(f"validation ({len(scored)} tiles): ROC AUC {auc:.3f}, at P(yes) >= {show(threshold)}: "
          f"sensitivity {counts.sensitivity:.3f}, specificity {counts.specificity:.3f}")
    for path in unreadable:
        print(f"warning: skipped unreadable {path}", file=sys.stderr)
    print(f"wrote the adapter, its card and roc.png to {args.out}\nServe it with:\nADAPTER_DIR={args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("finetune", lambda settings: finetune(args, settings), (EvaluationError, FinetuneError, ModelDirError))


if __name__ == "__main__":
    sys.exit(main())
