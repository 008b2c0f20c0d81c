"""Torch-free building blocks shared by every layer (below stamps): ranking metrics (`ranking`), temperature
scaling and ECE (`calibration`) and the one progress display (`progress`).
Nothing here imports another darkhaloscope package except `errors`."""
