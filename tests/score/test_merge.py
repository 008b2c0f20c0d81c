"""`dhs merge-scores`: the shards of a sharded `dhs score` as one file equal to the unsharded scoring, and the
refusals (missing / repeated shard, parts of different scorings, unreadable part, --out a part): one error line,
nothing written."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darkhaloscope.cli import main
from darkhaloscope.score.scoresfile import METADATA_KEY, read_provenance, read_scores


@pytest.fixture(scope="module")
def shards(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    parts = []
    for k in range(3):
        out = root / f"part-{k}.parquet"
        assert main(["score", "--checkpoint", str(demo["checkpoint"]), "--data", str(demo["tier"]), "--out", str(out),
                     "--shard", f"{k}/3", "--quiet"]) == 0
        parts.append(out)
    return parts


def _refused(argv, capsys, code=1) -> str:
    assert main(["merge-scores", *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_merged_shards_equal_the_unsharded_scores(demo, shards, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    assert main(["merge-scores", "--out", str(out), *map(str, shards[::-1])]) == 0
    assert "merged 3 part(s), shards 0-2 of 3: 120 rows" in capsys.readouterr().out
    merged, whole = pq.read_table(out), pq.read_table(demo["scores"])
    assert merged.num_rows == whole.num_rows == 120
    got = dict(zip(merged["row_id"].to_pylist(), merged["logit"].to_pylist()))
    want = dict(zip(whole["row_id"].to_pylist(), whole["logit"].to_pylist()))
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-4 for k in want)
    info = read_provenance(pq.read_schema(out))
    assert info["shard"] == [0, 1] and sorted(m["shard"][0] for m in info["merged_from"]) == [0, 1, 2]
    assert info["checkpoint"] == read_provenance(pq.read_schema(shards[0]))["checkpoint"]
    assert len(read_scores(out, split="all")) == 120  # what dhs evaluate / candidates read


def test_missing_and_repeated_shards_are_refused(shards, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert "shard(s) 1/3 missing (1 of 3)" in _refused(["--out", str(out), str(shards[0]), str(shards[2])], capsys)
    copy = tmp_path / "again.parquet"
    copy.write_bytes(shards[1].read_bytes())
    line = _refused(["--out", str(out), *map(str, shards), str(copy)], capsys)
    assert "again.parquet: shard 1/3 again" in line
    assert "named twice" in _refused(["--out", str(out), *map(str, shards), str(shards[0])], capsys, code=2)
    assert "is one of the parts" in _refused(["--out", str(shards[0]), *map(str, shards)], capsys, code=2)
    assert not out.exists()


def test_parts_of_another_scoring_or_unreadable_are_refused(shards, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    t = pq.read_table(shards[1])
    info = read_provenance(t.schema) | {"checkpoint": "other/best.pt"}
    other = tmp_path / "other.parquet"
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()}), other)
    line = _refused(["--out", str(out), str(shards[0]), str(other), str(shards[2])], capsys)
    assert "other.parquet: checkpoint is 'other/best.pt'" in line and "different scorings" in line
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: b"{not json"}), other)
    assert "metadata is not the JSON object" in _refused(["--out", str(out), str(shards[0]), str(other)], capsys)
    no_shard = {k: v for k, v in read_provenance(t.schema).items() if k != "shard"}
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: json.dumps(no_shard).encode()}), other)
    assert "no valid shard" in _refused(["--out", str(out), str(shards[0]), str(other), str(shards[2])], capsys)
    pq.write_table(pa.table({"x": [1]}).replace_schema_metadata(t.schema.metadata), other)
    assert "columns differ" in _refused(["--out", str(out), str(shards[0]), str(other), str(shards[2])], capsys)
    bad = tmp_path / "cut.parquet"
    bad.write_bytes(shards[0].read_bytes()[:100])
    assert "cut.parquet: not a readable parquet file" in _refused(["--out", str(out), str(bad)], capsys)
    assert "scores file not found" in _refused(["--out", str(out), str(tmp_path / "nope.parquet")], capsys, code=2)
    assert not out.exists()
