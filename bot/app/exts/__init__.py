"""One module per feature, each with `setup(bot)`; the client loads them by name."""
