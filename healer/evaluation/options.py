"""The command-line options that say which classes of a labelled folder are positive, negative or
left out; `healer.evaluate` and `healer.finetune` read a folder the same way."""

import argparse


def class_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_class_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--positive", type=class_list, default=["TUM"], metavar="CLASSES",
                        help="comma-separated positive classes (default: TUM)")
    parser.add_argument("--negative", type=class_list, default=None, metavar="CLASSES",
                        help="comma-separated negative classes (default: every other class); "
                        "classes named nowhere are skipped and reported")
    parser.add_argument("--ignore", type=class_list, default=[], metavar="CLASSES",
                        help="comma-separated classes to leave out (e.g. BACK)")


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("must be in (0, 1]")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value
