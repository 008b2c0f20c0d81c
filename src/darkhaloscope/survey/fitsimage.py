"""A small, fast reader of the FITS image cube the Legacy Surveys cutout service returns, and its validation.

    cube, header = read_fits_image(body)          # (planes, H, W) float32, header cards as a dict
    image, reason, extra = validate_cutout(cube, header, bands=("g", "r", "z"), size=64, max_nan_frac=0.02)

Parsing the primary HDU directly (80-byte cards in 2880-byte blocks, big-endian data, BSCALE/BZERO) costs
~0.1 ms per cutout where `astropy.io.fits` costs a few ms: `dhs cutouts` must stay under 5 ms of CPU per
cutout (benchmarks/RESULTS.md). Tests check it against astropy on the same bytes.

Every header value is checked before it is used: a text or negative NAXISn, a text BSCALE/BZERO, axis sizes
whose product overflows, or more than `MAX_DECODED_PIXELS` pixels (a header claiming a huge cube) raise
`FitsFormatError` before anything is allocated; a reply never becomes a traceback.
"""

from __future__ import annotations

import math

import numpy as np

from darkhaloscope.stamps.schema import MAX_DECODED_PIXELS  # the one bound of every image reader

_BLOCK = 2880
_MAX_HEADER_BLOCKS = 100  # 288 KB of header cards (the service sends 1-2 blocks)
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


def _number(header: dict, key: str, default):
    """A numeric header value; FitsFormatError naming the card for text, NaN or infinity."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FitsFormatError(f"FITS header {key} = {str(value)[:20]!r} is not a finite number")
    return value


def image_shape(header: dict, max_pixels: int = MAX_DECODED_PIXELS) -> tuple[int, ...]:
    """The data shape, C order ((NAXIS3,) NAXIS2, NAXIS1), checked: whole numbers >= 1 whose product is at
    most `max_pixels`. FitsFormatError otherwise, before anything is allocated."""
    naxis = header.get("NAXIS", 0)
    if isinstance(naxis, bool) or not isinstance(naxis, int) or not 2 <= naxis <= 3:
        raise FitsFormatError(f"unsupported FITS image (NAXIS {str(naxis)[:20]!r}); expected a 2-D or 3-D cube")
    shape = []
    for k in range(naxis, 0, -1):
        n = header.get(f"NAXIS{k}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FitsFormatError(f"FITS header NAXIS{k} = {str(n)[:20]!r}: expected a whole number >= 1")
        shape.append(n)
    count = math.prod(shape)  # Python ints: no overflow
    if count > max_pixels:
        raise FitsFormatError(f"FITS image of {'x'.join(map(str, shape))} pixels is larger than the "
                              f"{max_pixels:,}-pixel bound (MAX_DECODED_PIXELS); refused before decoding")
    return tuple(shape)


def _read_header(read) -> dict:
    """Header cards of one HDU as {key: value}, from `read(n)` (bytes of the file or stream, in order)."""
    header: dict = {}
    for _ in range(_MAX_HEADER_BLOCKS):
        raw = read(_BLOCK)
        if len(raw) < _BLOCK:
            raise FitsFormatError("FITS header truncated (no END card)")
        block = raw.decode("ascii", "replace")
        for i in range(0, _BLOCK, 80):
            card = block[i:i + 80]
            key = card[:8].strip()
            if key == "END":
                return header
            if card[8:10] == "= " and key:
                header[key] = _value(card[10:])
    raise FitsFormatError(f"FITS header longer than {_MAX_HEADER_BLOCKS} blocks without an END card")


def _dtype(header: dict) -> np.dtype:
    bitpix = header.get("BITPIX")
    if isinstance(bitpix, bool) or bitpix not in _DTYPES:
        raise FitsFormatError(f"unsupported FITS image (BITPIX {str(bitpix)[:20]!r}); expected 8, 16, 32, 64, -32 "
                              "or -64")
    return np.dtype(_DTYPES[bitpix])


def _decode(raw, header: dict, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """(planes, H, W) float32 of the data bytes `raw`, BSCALE / BZERO applied (checked first)."""
    scale, zero = _number(header, "BSCALE", 1), _number(header, "BZERO", 0)
    count = math.prod(shape)
    if len(raw) < count * dtype.itemsize:
        raise FitsFormatError(f"FITS data truncated: {len(raw)} of {count * dtype.itemsize} bytes")
    out = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).astype(np.float32)
    if scale != 1 or zero != 0:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf: caught as non-finite pixels
            out = (out * np.float32(scale) + np.float32(zero)).astype(np.float32)
    return out[None] if out.ndim == 2 else out


def read_fits_image(body: bytes, max_pixels: int = MAX_DECODED_PIXELS) -> tuple[np.ndarray, dict]:
    """(planes, H, W) float32 array (a 2-D image becomes 1 plane) and the primary header as {key: value}.
    FitsFormatError for anything else, including more than `max_pixels` pixels."""
    if body[:9] != b"SIMPLE  =":
        raise FitsFormatError("not a FITS file (no SIMPLE card)")
    view, pos = memoryview(body), 0

    def read(n: int) -> bytes:
        nonlocal pos
        pos += n
        return bytes(view[pos - n:pos])
    header = _read_header(read)
    dtype = _dtype(header)
    shape = image_shape(header, max_pixels)
    return _decode(view[pos:pos + math.prod(shape) * dtype.itemsize], header, shape, dtype), header


MAX_FITS_HDUS = 8  # HDUs read before the 3-D cube must have been found (a cutout has 1 or 2)


def read_fits_cube(stream, max_pixels: int = MAX_DECODED_PIXELS) -> tuple[np.ndarray, dict]:
    """The first 3-D image of a FITS file and its header (primary HDU or an IMAGE extension), read from the binary stream
    `stream` (a gzip.GzipFile streams .fits.gz) header first: each HDU's declared size is checked against
    `max_pixels` before its data are read, and no more than that many pixels' bytes are ever decompressed
    (a 1 MB .fits.gz declaring 3x10000x10000 is refused in milliseconds). FitsFormatError for anything
    else: no cube, truncated data, text BSCALE, too many HDUs. A tile-compressed cube (fpack, `.fits.fz`) is
    read too: its ZNAXISn are checked against `max_pixels` and its table bytes against the budget first."""
    budget = max_pixels * 8  # data bytes that may be read through (skipped HDUs included)

    pending = [stream.read(_BLOCK)]  # the first block, read to check the SIMPLE card

    def read(n: int) -> bytes:
        return pending.pop() if pending and n == _BLOCK else stream.read(n)
    if pending[0][:9] != b"SIMPLE  =":
        raise FitsFormatError("not a FITS file (no SIMPLE card)")
    for _ in range(MAX_FITS_HDUS):
        blocks: list[bytes] = []
        header = _read_header(lambda n: blocks.append(read(n)) or blocks[-1])
        naxis = header.get("NAXIS", 0)
        dtype = _dtype(header)
        if naxis == 3:
            shape = image_shape(header, max_pixels)
            return _decode(read(math.prod(shape) * dtype.itemsize), header, shape, dtype), header
        compressed = header.get("XTENSION") == "BINTABLE" and header.get("ZIMAGE") is True
        if compressed and header.get("ZNAXIS") == 3:
            zshape = image_shape(_uncompressed_header(header), max_pixels)  # checked before a byte is inflated
        if isinstance(naxis, bool) or not isinstance(naxis, int) or not 0 <= naxis <= 999:
            raise FitsFormatError(f"FITS header NAXIS = {str(naxis)[:20]!r}: expected a whole number")
        dims = [header.get(f"NAXIS{k}") for k in range(1, naxis + 1)]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in dims):
            raise FitsFormatError("FITS header NAXISn: expected whole numbers >= 0")
        pcount, gcount = _number(header, "PCOUNT", 0), _number(header, "GCOUNT", 1)
        nbytes = dtype.itemsize * int(gcount) * (int(pcount) + math.prod(dims)) if naxis else 0
        nbytes = -(-nbytes // _BLOCK) * _BLOCK
        budget -= nbytes
        if nbytes < 0 or budget < 0:
            raise FitsFormatError(f"FITS file holds more data before its 3-D image than the {max_pixels:,}-pixel "
                                  "bound (MAX_DECODED_PIXELS) allows; refused")
        data = read(nbytes)
        if len(data) < nbytes:
            raise FitsFormatError("FITS file truncated before a 3-D image (expected a g/r/z cube)")
        if compressed and header.get("ZNAXIS") == 3:
            return _decompress(b"".join(blocks), data, zshape), header
    raise FitsFormatError(f"no 3-D image HDU in the first {MAX_FITS_HDUS} (expected a g/r/z cube)")


def _uncompressed_header(header: dict) -> dict:
    """The image cards of a tile-compressed HDU (ZNAXISn), with its tiles checked to lie within the image."""
    out = {"NAXIS": header.get("ZNAXIS")}
    for k in range(1, 4):
        n, tile = header.get(f"ZNAXIS{k}"), header.get(f"ZTILE{k}", 1)
        out[f"NAXIS{k}"] = n
        if isinstance(tile, bool) or not isinstance(tile, int) or not 1 <= tile <= max(int(n or 1), 1):
            raise FitsFormatError(f"FITS header ZTILE{k} = {str(tile)[:20]!r}: expected a tile within the image")
    return out


def _decompress(header_bytes: bytes, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """(planes, H, W) float32 of one tile-compressed image HDU (fpack, `.fits.fz`), decoded by astropy from its
    header and data bytes (their size and the image's were bounded by the caller)."""
    import io
    import warnings

    from astropy.io import fits

    primary = "".join(c.ljust(80) for c in ("SIMPLE  =                    T", "BITPIX  =                    8",
                                            "NAXIS   =                    0", "EXTEND  =                    T", "END"))
    raw = primary.ljust(_BLOCK).encode("ascii") + header_bytes + data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdus:
                cube = np.asarray(hdus[1].data, dtype=np.float32)
    except Exception as e:  # astropy raises many types on corrupt tiles
        raise FitsFormatError(f"tile-compressed FITS image not decodable ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:80] if str(e) else ''})") from None
    if cube.shape != shape:
        raise FitsFormatError(f"tile-compressed FITS image decoded to {cube.shape}, its header says {shape}")
    return cube


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
