"""`python -m bot.cli`, like `statement-bot`."""

import sys

from bot.cli import main

sys.exit(main())
