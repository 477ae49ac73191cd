"""`python -m bot` starts the Discord bot, like `statement-bot run`."""

import sys

from bot.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
