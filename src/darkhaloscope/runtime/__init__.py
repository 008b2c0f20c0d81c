"""What training and inference share at run time: the device and torchrun set-up (`distributed`) and
reading a checkpoint for inference (`loading`)."""
