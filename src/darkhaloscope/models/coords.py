"""Position planes: input channels that tell a net where each pixel lies relative to the lens galaxy.

    x = add_coord_planes(x, "r")    # (B, 3, S, S) -> (B, 4, S, S): + radius from the centre / 16 px

Lensing is organised around the deflector, which sits at the stamp centre: an arc is light at the Einstein
radius bent tangentially around that centre, with its counter-image on the far side. A convolutional net
with global average pooling is translation invariant by design, so it sees "a blue curved streak" but not
where the streak lies relative to the centre, which is what separates an arc from a companion, a spiral arm
or a tidal tail. Appending the radius (`r`), or the offsets and the radius (`xyr`, CoordConv), as constant
planes gives every filter that position for free. The planes are the same for every stamp (they carry no
label) and rotate with nothing: dihedral augmentation turns the image about the centre, where r is invariant.
Measured: benchmarks/RESULTS.md, section "position planes". Chosen by `dhs train --coords=r`; stored in
the checkpoint's config, so scoring and committees rebuild the same input.
"""

from __future__ import annotations

import functools

import torch

from darkhaloscope.stamps.normalise import COORD_SCALE_PX, check_coords


@functools.lru_cache(maxsize=16)
def _planes(coords: str, size: int, device: str) -> torch.Tensor:
    names = check_coords(coords)
    if not names:
        return torch.zeros(0, size, size, device=device)
    c = torch.arange(size, dtype=torch.float32) - size // 2  # pixel size//2 is the centre, as schema.pixel_radius
    y, x = torch.meshgrid(c, c, indexing="ij")
    by_name = {"x": x, "y": y, "r": torch.hypot(x, y)}
    return (torch.stack([by_name[n] for n in names]) / COORD_SCALE_PX).to(device)


def coord_planes(coords: str, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(k, size, size) float32 planes of setting `coords` (k = 0 for 'none')."""
    return _planes(coords, int(size), str(device))


def add_coord_planes(x: torch.Tensor, coords: str) -> torch.Tensor:
    """(B, C, S, S) -> (B, C + k, S, S): the planes of `coords` appended after the bands (x unchanged for 'none')."""
    if coords == "none":
        return x
    p = coord_planes(coords, x.shape[-1], x.device).to(x.dtype)
    return torch.cat([x, p.expand(x.shape[0], -1, -1, -1)], dim=1)
