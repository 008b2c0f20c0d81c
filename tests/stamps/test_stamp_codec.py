"""The npz codec: bit-exact round trip, both layouts, the users' np.savez blobs, every bad input."""

import io
import re
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from darkhaloscope.errors import DataError, StampDecodeError
from darkhaloscope.stamps.codec import decode_batch, encode_batch, encode_stamp


def _stamps(n=6, seed=0, extreme=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.003, size=(n, 3, 64, 64)).astype(np.float32)
    if extreme:
        x[0, 0, 0, :4] = [1e-40, -0.0, 3.4e38, -1e-30]  # subnormal, negative zero, huge: all must survive
    return x


def _savez(compressed: bool, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_is_bit_exact(compress):
    x = _stamps(extreme=True)
    blobs = encode_batch(x, compress=compress)
    res = decode_batch(blobs, check_finite=True)
    assert res.valid.all() and not res.errors
    assert np.array_equal(res.images.view(np.uint32), x.view(np.uint32))  # bit-exact, -0.0 included


def test_encode_is_deterministic_and_readable_by_numpy():
    x = _stamps(1)[0]
    a, b = encode_stamp(x), encode_stamp(x)
    assert a == b
    d = np.load(io.BytesIO(a))
    assert sorted(d.files) == ["image_g", "image_r", "image_z"]
    assert np.array_equal(d["image_r"], x[1])


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, ">f4"])
def test_users_savez_blobs_any_float_dtype(compressed, dtype):
    x = _stamps(2)
    blobs = [_savez(compressed, image_g=s[0].astype(dtype), image_r=s[1].astype(dtype),
                    image_z=np.asfortranarray(s[2].astype(dtype))) for s in x]
    res = decode_batch(blobs)
    assert np.array_equal(res.images, x.astype(dtype).astype(np.float32))


def test_mixed_dtypes_in_one_batch_do_not_share_a_cached_header():
    x = _stamps(2)
    blobs = [encode_stamp(x[0], dtype=np.float16), encode_stamp(x[1], dtype=np.float64)]
    res = decode_batch(blobs)
    assert np.array_equal(res.images[0], x[0].astype(np.float16).astype(np.float32))
    assert np.array_equal(res.images[1], x[1])


def test_dr10_cutout_layout_is_centre_cropped(dr10_dir):
    files = sorted(dr10_dir.glob("*.npz"))
    assert files, f"no .npz in {dr10_dir}"
    res = decode_batch([f.read_bytes() for f in files])
    for img, f in zip(res.images, files):
        cut = np.load(f)["cutout"]  # (101, 101, 3) HWC g/r/z
        y0 = (cut.shape[0] - 64) // 2
        assert np.array_equal(img, np.moveaxis(cut[y0:y0 + 64, y0:y0 + 64], 2, 0))
    assert 1e-4 < np.median(np.abs(res.images[:, 1])) < 0.1  # nanomaggies, r band: sky-level values


def test_bandset_r_row_is_a_clear_per_row_outcome():
    x = _stamps(3)
    blobs = encode_batch(x)
    blobs[1] = _savez(True, image_r=x[1, 1])  # a bandset='r' row
    with pytest.raises(StampDecodeError, match=r"part-0\.parquet row 1: missing band\(s\) image_g, image_z"):
        decode_batch(blobs, where="part-0.parquet")
    res = decode_batch(blobs, on_error="mask")
    assert res.valid.tolist() == [True, False, True]
    assert "holds only image_r" in res.errors[1]
    assert not res.images[1].any()  # zero-filled, never garbage
    assert np.array_equal(res.images[2], x[2])
    only_r = decode_batch([blobs[1]], bands=("r",))  # the caller can ask for the bands it has
    assert np.array_equal(only_r.images[0, 0], x[1, 1])


def _truncated(b: bytes) -> bytes:
    return b[: len(b) // 2]


def _flipped(b: bytes) -> bytes:
    raw = bytearray(b)
    for i in range(200, 260):
        raw[i] ^= 0xFF  # inside the first member's deflate stream
    return bytes(raw)


BAD_BLOBS = {
    "wrong shape": (lambda x: _savez(True, image_g=x[0, :32, :32], image_r=x[1], image_z=x[2]),
                    r"image_g has shape \(32, 32\), expected \(64, 64\)"),
    "not a zip": (lambda x: b"this is not an npz at all, just some bytes" * 3, "not a zip/npz"),
    "truncated": (lambda x: _truncated(encode_stamp(x)), "truncated|corrupt|not a zip"),
    "corrupt deflate": (lambda x: _flipped(encode_stamp(x)), "corrupt npz|Error|invalid"),
    "null": (lambda x: None, "stamp is null"),
    "unknown layout": (lambda x: _savez(True, pixels=x), r"unknown npz layout \(members: pixels\)"),
    "object dtype": (lambda x: _savez(False, image_g=np.array(["a"] * 4096).reshape(64, 64), image_r=x[1],
                                      image_z=x[2]), "not a real number type"),
    "nan pixels": (lambda x: encode_stamp(np.where(np.arange(64) == 5, np.nan, x).astype(np.float32)),
                   r"192 NaN/Inf pixel\(s\)"),
    "inf pixels": (lambda x: encode_stamp(np.where(np.arange(64) == 5, np.inf, x).astype(np.float32)),
                   "NaN/Inf"),
}


@pytest.mark.parametrize("case", sorted(BAD_BLOBS))
def test_every_bad_input_names_its_row(case):
    make, pattern = BAD_BLOBS[case]
    x = _stamps(3)
    blobs = encode_batch(x)
    blobs[2] = make(x[2])
    with pytest.raises(StampDecodeError) as e:
        decode_batch(blobs, where=["a.parquet row 10", "a.parquet row 11", "a.parquet row 12"])
    assert isinstance(e.value, DataError) and e.value.where == "a.parquet row 12"
    msg = str(e.value)
    assert msg.startswith("a.parquet row 12: ") and "\n" not in msg
    assert re.search(pattern, msg), msg
    res = decode_batch(blobs, on_error="mask")
    assert res.valid.tolist() == [True, True, False] and list(res.errors) == [2]
    assert np.array_equal(res.images[:2], x[:2]) and not res.images[2].any()


def test_unsupported_compression_method():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_BZIP2) as zf:
        for b in "grz":
            m = io.BytesIO()
            np.lib.format.write_array(m, np.zeros((64, 64), np.float32))
            zf.writestr(f"image_{b}.npy", m.getvalue())
    res = decode_batch([buf.getvalue()], on_error="mask")
    assert "unsupported zip compression method 12" in res.errors[0]


def test_threads_give_the_same_result():
    x = _stamps(40, seed=1)
    blobs = encode_batch(x)
    blobs[7] = b"garbage"
    one = decode_batch(blobs, on_error="mask")
    two = decode_batch(blobs, on_error="mask", threads=2)
    assert np.array_equal(one.images, two.images) and one.errors == two.errors


def test_arrow_column_is_read_zero_copy_with_offsets_and_nulls():
    x = _stamps(5)
    blobs = encode_batch(x)
    blobs[3] = None
    for col in (pa.array(blobs, pa.binary()), pa.array(blobs, pa.large_binary()),
                pa.chunked_array([pa.array(blobs[:2], pa.binary()), pa.array(blobs[2:], pa.binary())])):
        sliced = col.slice(1, 4)  # non-zero offset into the arrow buffers
        res = decode_batch(sliced, on_error="mask")
        assert res.valid.tolist() == [True, True, False, True]
        assert np.array_equal(res.images[[0, 1, 3]], x[[1, 2, 4]])
        assert res.errors[2] == "stamp is null"


def test_out_buffer_is_reused_and_checked():
    x = _stamps(4)
    out = np.full((4, 3, 64, 64), 7.0, np.float32)
    res = decode_batch(encode_batch(x), out=out)
    assert res.images is out and np.array_equal(out, x)
    with pytest.raises(ValueError, match="expected"):
        decode_batch(encode_batch(x), out=np.empty((3, 3, 64, 64), np.float32))


def test_encode_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(3, H, W\)"):
        encode_stamp(np.zeros((64, 64), np.float32))
