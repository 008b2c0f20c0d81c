"""The batched torch injection engine (`dhs simulate --engine torch`): lensing, source light, hosts, PSF
convolution and noise of a whole batch of stamps as tensor expressions, drawing every parameter exactly as
the numpy reference engine in sim/ does (docs/injection.md)."""
