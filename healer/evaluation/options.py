"""What the commands share (`healer.evaluate`, `healer.finetune`): the options that say which
classes of a labelled folder are positive, negative or left out, and how a run ends on an
expected error (one line on stderr, exit status 1)."""

import argparse
import sys
from collections.abc import Callable

from pydantic import ValidationError

from healer.logs import setup_logging
from healer.settings import Settings


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


def run_command(name: str, body: Callable[[Settings], int], expected: tuple[type[Exception], ...]) -> int:
    """`body(Settings())` with warnings-only logging; a bad setting or an `expected` error is one
    line on stderr and exit status 1, never a traceback."""
    try:
        settings = Settings()
        setup_logging("warning")
        return body(settings)
    except ValidationError as error:
        message = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        print(f"{name}: error: bad setting: {message}", file=sys.stderr)
    except expected as error:
        print(f"{name}: error: {error}", file=sys.stderr)
    return 1
