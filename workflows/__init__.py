"""The jobs users run (train, evaluate, predict, preprocess, demo) and the ``avrsp`` CLI."""
