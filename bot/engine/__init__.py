"""What the terminal and Discord share: the engine (its corpus and its answers), answer records,
extractive and generated answers with their verifier, the database and insights. Never imports
discord, argparse, the CLI or evaluation."""

from bot.engine.answering import Engine, start
from bot.engine.corpus import SHARED, WEB
from bot.engine.folders import UPLOADS
from index.errors import Busy

__all__ = ["SHARED", "UPLOADS", "WEB", "Busy", "Engine", "start"]
