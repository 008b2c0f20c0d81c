"""Honest evaluation of a lens finder: `dhs score` (model -> scores file) and `dhs evaluate` (scores file ->
metrics, selection function, calibration, figures, report). `metrics` is plain numpy and torch-free."""
