"""Honest evaluation of a lens finder from a scores file (written by `dhs score`, package `score`): `dhs evaluate`
(metrics, selection function, calibration, figures, report) and `dhs candidates` (the top of the ranked list)."""
