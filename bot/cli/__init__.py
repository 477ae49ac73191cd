"""`statement-bot`: search, ask, index, eval, insights, feedback and run, from one engine."""

# The parser and the error funnel live here; each family of commands, with its options, is a
# module: bot/cli/corpus.py (search, ask, add, index) and bot/cli/quality.py (eval, insights,
# feedback, train-reader).

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from bot.cli import corpus, quality
from bot.config import Settings
from index.errors import Error

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(
            data_dir=getattr(args, "data", None), state_dir=getattr(args, "state", None)
        )
        level = settings.log_level or ("INFO" if args.run is _run else "WARNING")
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        for noisy in ("discord.http", "bm25s", "faiss.loader", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return args.run(args, settings) or 0
    except Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (e.g. `| head`) stopped early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's copy of these options must not reset a value given before it.
    common.add_argument(
        "--data",
        type=Path,
        default=argparse.SUPPRESS,
        help="documents folder (env DATA_DIR; default data)",
    )
    common.add_argument(
        "--state",
        type=Path,
        default=argparse.SUPPRESS,
        help="index and database folder (env STATE_DIR; default state)",
    )
    parser = argparse.ArgumentParser(prog="statement-bot", description=__doc__, parents=[common])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    corpus.add_commands(sub, common)
    quality.add_commands(sub, common)

    p = sub.add_parser("run", parents=[common], help="start the Discord bot")
    p.add_argument(
        "--check", action="store_true", help="check settings, token format and index, then exit"
    )
    p.set_defaults(run=_run)
    return parser


def _run(args, settings: Settings) -> int:
    if args.check:
        from bot.health import check

        print("\n".join(check(settings)))
        return 0
    from bot.app.client import run

    return run(settings)
