"""Torch-free building blocks shared by every layer (below stamps): ranking metrics (`ranking`), temperature
scaling and ECE (`calibration`), the one progress display (`progress`), the one JSON sanitiser / jsonl reader
(`jsonio`), the one report model and writer (`report`) and the cross-validated logistic probe (`logistic`). Nothing here imports another darkhaloscope package
except the base modules `errors`, `fileio` and `config`."""
