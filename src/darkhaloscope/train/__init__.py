"""Training: the input pipeline (`data.py`), device-side preprocessing (`preprocess.py`), the loop,
checkpoints and distributed set-up. Exercised by `dhs train` and `dhs bench train`."""
