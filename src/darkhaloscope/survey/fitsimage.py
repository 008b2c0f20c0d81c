"""A small, fast reader of the FITS image cube the Legacy Surveys cutout service returns, and its validation.

    cube, header = read_fits_image(body)          # (planes, H, W) float32, header cards as a dict
    image, reason, extra = validate_cutout(cube, header, bands=("g", "r", "z"), size=64, max_nan_frac=0.02)

Parsing the primary HDU directly (80-byte cards in 2880-byte blocks, big-endian data, BSCALE/BZERO) costs
~0.1 ms per cutout where `astropy.io.fits` costs a few ms: `dhs cutouts` must stay under 5 ms of CPU per
cutout (benchmarks/RESULTS.md). Tests check it against astropy on the same bytes.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 2880
_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class FitsFormatError(ValueError):
    """The bytes are not a complete FITS primary image (truncated, HTML error page, ...)."""


def _value(text: str):
    text = text.split("/", 1)[0].strip() if not text.lstrip().startswith("'") else text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        return text[1:end if end > 0 else None].rstrip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text.replace("D", "E"))
        except ValueError:
            return text


def read_fits_image(body: bytes) -> tuple[np.ndarray, dict]:
    """(planes, H, W) float32 array (a 2-D image becomes 1 plane) and the primary header as {key: value}."""
    if body[:9] != b"SIMPLE  =":
        raise FitsFormatError("not a FITS file (no SIMPLE card)")
    header: dict = {}
    pos = 0
    while True:
        if pos + _BLOCK > len(body):
            raise FitsFormatError("FITS header truncated (no END card)")
        block = body[pos:pos + _BLOCK].decode("ascii", "replace")
        pos += _BLOCK
        done = False
        for i in range(0, _BLOCK, 80):
            card = block[i:i + 80]
            key = card[:8].strip()
            if key == "END":
                done = True
                break
            if card[8:10] == "= " and key:
                header[key] = _value(card[10:])
        if done:
            break
    bitpix, naxis = header.get("BITPIX"), header.get("NAXIS", 0)
    if bitpix not in _DTYPES or not isinstance(naxis, int) or not 2 <= naxis <= 3:
        raise FitsFormatError(f"unsupported FITS image (BITPIX {bitpix}, NAXIS {naxis}); expected a 2-D or 3-D cube")
    shape = tuple(int(header.get(f"NAXIS{k}", 0)) for k in range(naxis, 0, -1))  # C order: (NAXIS3,) NAXIS2, NAXIS1
    count = int(np.prod(shape))
    dtype = np.dtype(_DTYPES[bitpix])
    if pos + count * dtype.itemsize > len(body):
        raise FitsFormatError(f"FITS data truncated: {len(body) - pos} of {count * dtype.itemsize} bytes")
    data = np.frombuffer(body, dtype=dtype, count=count, offset=pos).reshape(shape)
    out = data.astype(np.float32)
    scale, zero = header.get("BSCALE", 1), header.get("BZERO", 0)
    if scale != 1 or zero != 0:
        out = (out * np.float32(scale) + np.float32(zero)).astype(np.float32)
    return (out[None] if out.ndim == 2 else out), header


def cube_bands(header: dict, planes: int, requested: tuple[str, ...]) -> list[str]:
    """Band of each plane: the service's BAND0, BAND1, ... cards, else the requested order."""
    named = [str(header.get(f"BAND{i}", "")).strip().lower() for i in range(planes)]
    return named if all(named) else list(requested[:planes])


def validate_cutout(cube: np.ndarray, header: dict, bands: tuple[str, ...], size: int,
                    max_nan_frac: float) -> tuple[np.ndarray | None, str, dict]:
    """(image (len(bands), size, size) float32 with NaN set to 0, '', extras) or (None, reason, extras)."""
    have = cube_bands(header, cube.shape[0], bands)
    extras: dict = {}
    for b in bands:
        for key in (f"PSFSIZE_{b.upper()}", f"PSFSIZE{have.index(b) if b in have else -1}"):
            if isinstance(header.get(key), (int, float)):
                extras[f"psfsize_{b}"] = float(header[key])
                break
    missing = [b for b in bands if b not in have]
    if missing:
        return None, f"missing band(s) {','.join(missing)} (service returned {','.join(have) or 'none'})", extras
    if cube.shape[1:] != (size, size):
        return None, f"wrong shape {cube.shape[1]}x{cube.shape[2]} (expected {size}x{size})", extras
    image = cube[[have.index(b) for b in bands]]
    nan = ~np.isfinite(image)
    extras["nan_frac"] = float(nan.mean())
    for i, b in enumerate(bands):
        frac = float(nan[i].mean())
        if frac > max_nan_frac:
            return None, f"band {b}: {frac:.0%} non-finite pixels (> {max_nan_frac:.0%}; no coverage?)", extras
        if not np.any(image[i][~nan[i]]):
            return None, f"band {b} is all zero (no data there)", extras
    if nan.any():
        image = np.where(nan, np.float32(0), image)
    return np.ascontiguousarray(image, dtype=np.float32), "", extras
