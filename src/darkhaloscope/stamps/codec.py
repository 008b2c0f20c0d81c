"""The npz stamp codec: bytes of `stamp_npz` <-> (N, 3, 64, 64) float32 arrays in nanomaggies.

Decoding parses the zip central directory and the .npy headers directly (headers are cached: every row
of a tier has the same ones) and inflates each member with zlib into a preallocated batch array, instead
of `np.load` per row; a pyarrow binary column is read through zero-copy memoryviews. Inflation releases
the GIL, so `threads=` > 1 helps on big batches. Dev box (2 cores): ~6200 deflate stamps/s on one
thread, ~10600 on two; zlib's inflate alone is ~7200/s per core (benchmarks/RESULTS.md, loader).

Two layouts are accepted:
- Phase 4c: members `image_g`, `image_r`, `image_z`, each (64, 64), float16/32/64.
- DR10 cutout files: member `cutout`, (H, W, 3) g/r/z, centre-cropped to 64x64.

Exercise it with `dhs bench loader TIER`.
"""

from __future__ import annotations

import ast
import io
import math
import struct
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from darkhaloscope.errors import StampDecodeError
from darkhaloscope.stamps.schema import BANDS, MAX_DECODED_PIXELS, NPZ_BAND_KEYS, NPZ_CUTOUT_KEY, STAMP_SIZE

_EOCD_SIG = b"PK\x05\x06"
_CDIR_SIG = b"PK\x01\x02"
_LOCAL_SIG = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_CACHE: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}


@dataclass
class DecodeResult:
    """A decoded batch: `images` (N, 3, S, S) float32; `valid[i]` False where row i failed."""

    images: np.ndarray
    valid: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)  # row index in batch -> reason


def _find_eocd(blob) -> int:
    """Offset of the end-of-central-directory record (usually the last 22 bytes: checked first, no copy)."""
    n = len(blob)
    if n >= 22 and blob[n - 22:n - 18] == _EOCD_SIG:
        return n - 22
    start = max(0, n - 65558)  # 22-byte record + a comment of up to 65535 bytes
    found = bytes(blob[start:]).rfind(_EOCD_SIG)
    return start + found if found >= 0 else -1


def _zip_members(blob) -> dict[str, tuple[int, int, int, int]]:
    """Map member name -> (compression method, data offset, compressed size, uncompressed size).

    `blob` is bytes or a memoryview (a zero-copy slice of an arrow buffer)."""
    mv = memoryview(blob)
    end = _find_eocd(blob)
    if end < 0:
        raise ValueError("not a zip/npz (no end-of-central-directory record; truncated or corrupt)")
    n_entries, cdir_size, cdir_off = struct.unpack_from("<HII", blob, end + 10)
    members: dict[str, tuple[int, int, int, int]] = {}
    pos = cdir_off
    for _ in range(n_entries):
        if mv[pos:pos + 4] != _CDIR_SIG:
            raise ValueError("corrupt zip central directory")
        (method, _t, _d, _crc, csize, usize, nlen, xlen, clen) = struct.unpack_from("<HHHIIIHHH", blob, pos + 10)
        local_off = struct.unpack_from("<I", blob, pos + 42)[0]
        name = bytes(mv[pos + 46:pos + 46 + nlen]).decode("utf-8")
        if 0xFFFFFFFF in (csize, usize, local_off):
            csize, usize, local_off = _zip64_sizes(blob, pos + 46 + nlen, xlen, csize, usize, local_off)
        pos += 46 + nlen + xlen + clen
        if mv[local_off:local_off + 4] != _LOCAL_SIG:
            raise ValueError(f"corrupt zip local header for member {name}")
        lnlen, lxlen = struct.unpack_from("<HH", blob, local_off + 26)
        data_off = local_off + 30 + lnlen + lxlen
        if data_off + csize > len(blob):
            raise ValueError(f"member {name} runs past the end of the blob (truncated)")
        members[name[:-4] if name.endswith(".npy") else name] = (method, data_off, csize, usize)
    return members


def _zip64_sizes(blob: bytes, xpos: int, xlen: int, csize: int, usize: int, off: int):
    end = xpos + xlen
    while xpos + 4 <= end:
        hid, hlen = struct.unpack_from("<HH", blob, xpos)
        if hid == 1:
            vals = list(struct.unpack_from(f"<{hlen // 8}Q", blob, xpos + 4))
            if usize == 0xFFFFFFFF:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF:
                csize = vals.pop(0)
            if off == 0xFFFFFFFF:
                off = vals.pop(0)
            break
        xpos += 4 + hlen
    return csize, usize, off


NPY_HEADER_SLACK = 4096  # bytes: a .npy header is 128 in practice; anything beyond is refused
MAX_BAND_BYTES = STAMP_SIZE * STAMP_SIZE * 8 + NPY_HEADER_SLACK  # one (64, 64) float64 band
MAX_CUTOUT_BYTES = MAX_DECODED_PIXELS * 8 + NPY_HEADER_SLACK  # a cutout of MAX_DECODED_PIXELS float64 (DR10: 101x101x3)


def _member_bytes(blob, info: tuple[int, int, int, int], name: str = "member", limit: int = MAX_BAND_BYTES):
    """The uncompressed bytes of one member (a zero-copy view when the member is stored). A member that
    declares, or inflates to, more than `limit` bytes is refused before it can fill memory (zip bomb)."""
    method, off, csize, usize = info
    if usize > limit:
        raise ValueError(f"{name} declares {usize} bytes inflated, more than a stamp can hold ({limit}); refused "
                         "without inflating (corrupt or hostile npz)")
    if method == 0:
        return memoryview(blob)[off:off + csize]
    if method == 8:
        raw = zlib.decompressobj(-15).decompress(memoryview(blob)[off:off + csize], limit + 1)
        if len(raw) > max(usize, 0) or len(raw) > limit:
            raise ValueError(f"{name} inflates past its declared size of {usize} bytes; refused (corrupt or "
                             "hostile npz)")
        return raw
    raise ValueError(f"unsupported zip compression method {method} (expected stored or deflate)")


def _npy_array(raw) -> np.ndarray:
    """A read-only view of the array stored in .npy bytes `raw` (header parsed once per distinct header)."""
    if bytes(raw[:6]) != _NPY_MAGIC:  # bytes(): a view of any format compares by byte
        raise ValueError("member is not a .npy array")
    major = raw[6]
    if major == 1:
        hlen = struct.unpack_from("<H", raw, 8)[0]
        start = 10
    else:
        hlen = struct.unpack_from("<I", raw, 8)[0]
        start = 12
    header = bytes(raw[start:start + hlen])
    parsed = _HEADER_CACHE.get(header)
    if parsed is None:
        d = ast.literal_eval(header.decode("latin1"))
        parsed = (np.dtype(d["descr"]), tuple(d["shape"]), bool(d["fortran_order"]))
        if parsed[0].kind not in "fiu":
            raise ValueError(f"pixel dtype {parsed[0]} is not a real number type (expected float16/32/64)")
        if len(_HEADER_CACHE) < 256:
            _HEADER_CACHE[header] = parsed
    dtype, shape, fortran = parsed
    count = math.prod(shape)  # Python ints: a lying header cannot overflow it
    if count > MAX_DECODED_PIXELS:
        raise ValueError(f"array of shape {shape} is larger than the {MAX_DECODED_PIXELS:,}-pixel bound "
                         "(MAX_DECODED_PIXELS); refused before decoding")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=start + hlen)
    return arr.reshape(shape, order="F" if fortran else "C")


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[-2:]
    y0, x0 = (h - size) // 2, (w - size) // 2
    return img[..., y0:y0 + size, x0:x0 + size]


# Low-level failures of a corrupt blob, all reported as "corrupt npz (...)" for the row.
_CORRUPT = (struct.error, UnicodeDecodeError, SyntaxError, TypeError, KeyError, IndexError, zlib.error,
            OverflowError)


def decode_into(blob, out: np.ndarray, bands: Sequence[str] = BANDS) -> None:
    """Decode one npz blob (bytes or memoryview) into `out` (len(bands), S, S); raise ValueError with the
    reason on failure."""
    if blob is None:
        raise ValueError("stamp is null")
    try:
        _decode_into(blob, out, bands)
    except _CORRUPT as e:
        raise ValueError(f"corrupt npz ({type(e).__name__}: {e})".splitlines()[0]) from None


def _decode_into(blob, out: np.ndarray, bands: Sequence[str]) -> None:
    members = _zip_members(blob)
    size = out.shape[-1]
    keys = [f"image_{b}" for b in bands]
    if all(k in members for k in keys):
        for i, k in enumerate(keys):
            a = _npy_array(_member_bytes(blob, members[k], k))
            if a.shape != (size, size):
                raise ValueError(f"{k} has shape {a.shape}, expected ({size}, {size})")
            out[i] = a
        return
    if NPZ_CUTOUT_KEY in members:
        a = _npy_array(_member_bytes(blob, members[NPZ_CUTOUT_KEY], NPZ_CUTOUT_KEY, MAX_CUTOUT_BYTES))
        if a.ndim != 3 or a.shape[2] != len(BANDS) or min(a.shape[:2]) < size:
            raise ValueError(f"{NPZ_CUTOUT_KEY} has shape {a.shape}, expected (H>={size}, W>={size}, 3) g/r/z")
        idx = [BANDS.index(b) for b in bands]
        out[...] = _centre_crop(np.moveaxis(a, 2, 0)[idx], size)
        return
    present = sorted(m for m in members if m.startswith("image_") or m == NPZ_CUTOUT_KEY)
    missing = [k for k in keys if k not in members]
    if present:
        raise ValueError(f"missing band(s) {', '.join(missing)}: the npz holds only {', '.join(present)} "
                         "(a single-band bandset row?); select rows with all bands or train on those bands")
    raise ValueError(f"unknown npz layout (members: {', '.join(sorted(members)) or 'none'}); expected "
                     f"{', '.join(NPZ_BAND_KEYS)} or '{NPZ_CUTOUT_KEY}'")


MAX_SCALAR_BYTES = 1024 + NPY_HEADER_SLACK  # a 0-d metadata member (a grade, a PSF size); anything longer is not read


def npz_scalar(blob, name: str) -> str | float | int | bool | None:
    """The 0-d member `name` of one npz blob as a Python value (e.g. a DR10 cutout's `meta_tier` grade 'B' or its
    `meta_psfsize_r` in arcsec); None when it is absent, not 0-d, not a string / number / bool, longer than
    MAX_SCALAR_BYTES or unreadable. Bounded like the pixel members (a zip bomb is not inflated); never unpickles."""
    try:
        members = _zip_members(blob)
        if name not in members:
            return None
        a = np.lib.format.read_array(io.BytesIO(bytes(_member_bytes(blob, members[name], name, MAX_SCALAR_BYTES))),
                                     allow_pickle=False)
    except (ValueError, *_CORRUPT):
        return None
    return a.item() if a.ndim == 0 and a.dtype.kind in "Ufiub" else None


def blob_views(blobs) -> list:
    """Rows of a pyarrow binary column as zero-copy memoryviews (None for nulls); other sequences as is."""
    if isinstance(blobs, pa.ChunkedArray):
        return [v for chunk in blobs.chunks for v in blob_views(chunk)]
    if isinstance(blobs, pa.Array):
        if not (pa.types.is_binary(blobs.type) or pa.types.is_large_binary(blobs.type)):
            raise ValueError(f"stamp column has type {blobs.type}, expected binary (npz bytes)")
        _validity, offsets_buf, data_buf = blobs.buffers()
        n = len(blobs)
        off_type = np.int64 if pa.types.is_large_binary(blobs.type) else np.int32
        offsets = np.frombuffer(offsets_buf, off_type, count=blobs.offset + n + 1)[blobs.offset:].tolist()
        # Arrow's buffers are signed-char ('b') views: cast to bytes ('B'), or a stored member's magic
        # b"\x93NUMPY" compares unequal to its own bytes (stored npz members were never decoded)
        data = memoryview(data_buf).cast("B") if data_buf is not None else memoryview(b"")
        views = [data[offsets[i]:offsets[i + 1]] for i in range(n)]
        if blobs.null_count:
            for i in np.flatnonzero(blobs.is_null().to_numpy(zero_copy_only=False)):
                views[i] = None
        return views
    return list(blobs)


def nonfinite_rows(images: np.ndarray) -> np.ndarray:
    """Indices of rows holding a NaN/Inf pixel. One summing pass; rows whose float32 sum is not finite
    (NaN/Inf, or an overflow of huge but finite values) are then checked exactly."""
    n = len(images)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        sums = images.reshape(n, -1).sum(axis=1)
    suspect = np.flatnonzero(~np.isfinite(sums))
    return np.asarray([i for i in suspect if not np.isfinite(images[i]).all()], dtype=np.int64)


def decode_batch(blobs: Sequence[bytes | None], *, where: Sequence[str] | str | None = None,
                 on_error: str = "raise", check_finite: bool = True, bands: Sequence[str] = BANDS,
                 size: int = STAMP_SIZE, threads: int = 1, out: np.ndarray | None = None) -> DecodeResult:
    """Decode `blobs` (a list of bytes, or a pyarrow binary column read zero-copy) into one
    (N, len(bands), size, size) float32 array.

    `where` names each row for messages (a list, or one prefix such as 'file.parquet' to which
    'row i' is added). `on_error='raise'` raises StampDecodeError naming the first bad row;
    `on_error='mask'` zero-fills bad rows and reports them in `valid` / `errors`.
    `check_finite` treats NaN/Inf pixels as an error of that row. Pass `out` (reused between batches)
    to avoid page-faulting a fresh array each time.
    """
    if on_error not in ("raise", "mask"):
        raise ValueError("on_error must be 'raise' or 'mask'")
    blobs = blob_views(blobs)
    n = len(blobs)
    shape = (n, len(bands), size, size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out has shape {out.shape} {out.dtype}, expected {shape} float32")
    valid = np.ones(n, dtype=bool)
    errors: dict[int, str] = {}

    def name(i: int) -> str:
        if where is None:
            return f"row {i}"
        if isinstance(where, str):
            return f"{where} row {i}"
        return where[i]

    def one(i: int) -> None:
        try:
            decode_into(blobs[i], out[i], bands)
        except ValueError as e:
            valid[i] = False
            errors[i] = str(e)
            out[i] = 0.0

    if threads > 1 and n >= 4 * threads:
        # zlib releases the GIL while inflating; contiguous chunks keep the per-task overhead small
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(lambda rows: [one(i) for i in rows], np.array_split(np.arange(n), 4 * threads)))
    else:
        for i in range(n):
            one(i)
    if check_finite:
        for i in nonfinite_rows(out):
            if not valid[i]:
                continue
            nbad = int((~np.isfinite(out[i])).sum())
            errors[int(i)] = f"{nbad} NaN/Inf pixel(s); drop the row (cutout_ok=0) or re-make the cutout"
            valid[i] = False
            out[i] = 0.0
    if errors and on_error == "raise":
        i = min(errors)
        raise StampDecodeError(errors[i], where=name(i))
    return DecodeResult(out, valid, errors)


def encode_stamp(image: np.ndarray, bands: Sequence[str] = BANDS, dtype=np.float32,
                 compress: bool = True) -> bytes:
    """Encode one (len(bands), H, W) stamp in the Phase 4c npz layout (`image_<band>` members).

    Output is deterministic (fixed zip timestamps), so a tier built twice is byte-identical.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != len(bands):
        raise ValueError(f"expected ({len(bands)}, H, W), got {image.shape}")
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for i, b in enumerate(bands):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(image[i], dtype=dtype), allow_pickle=False)
            info = zipfile.ZipInfo(f"image_{b}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o600 << 16
            zf.writestr(info, member.getvalue(), compresslevel=6 if compress else None)
    return buf.getvalue()


def encode_batch(images: np.ndarray, **kw) -> list[bytes]:
    """Encode (N, 3, H, W) stamps; see `encode_stamp`."""
    return [encode_stamp(img, **kw) for img in images]
