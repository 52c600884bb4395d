"""Searching for the best model for a board: candidates trained and scored on one budget, their
speed predicted by a cost model and confirmed in the emulators (`tinylm search`).

space.py (the factors searched: width, depth, heads, FFN width, vocabulary, bits), settings.py
(a search's settings), corpus.py (the text tokenized once per vocabulary), counts.py (the
work of a token, counted from the shape, on one core or two), costs.py (cycles per token as
the kernels' costs of that work, fitted to emulator measurements: costmodel.json),
measure.py (a .bin's speed in the emulators or on the host), candidate.py (one shape: checks
before training, training, its .bin scored), study.py (the Optuna study: storage, sampling,
pruning, workers, resuming), run.py (a whole search, the reference models, the front's
confirmation), results.py (tables, the Pareto front, templates, the plot). Needs Optuna (the
`search` extra), imported when a study is opened. Imports every room above it but the
command line.
"""
