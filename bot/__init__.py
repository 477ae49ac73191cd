"""statement-bot: cited answers about the indexed documents, in Discord and the terminal."""
