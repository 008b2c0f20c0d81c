"""Training: the input pipeline (`data.py`), the loop, the step, checkpoints and the mirror. The device and
torchrun set-up and checkpoint loading live below, in `runtime`. Exercised by `dhs train` and `dhs bench train`."""
