"""Inference: `dhs score` (a checkpoint or committee over a tier or cutout folder -> one scores file), the
sources it reads stamps from, the scores file itself, and `dhs mine`. `evaluate` reads what this writes."""
