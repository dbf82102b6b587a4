from pathlib import Path

import pytest

from sidrec.io import atomic_open, read_json, sha256_file, write_json
from sidrec.errors import SidrecError


def test_interrupted_write_leaves_old_file_and_no_temp(tmp_path: Path):
    target = tmp_path / "artifact.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write('{"version": 2, "half')
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["artifact.json"]


def test_new_file_appears_only_when_complete(tmp_path: Path):
    target = tmp_path / "sub" / "new.bin"
    with atomic_open(target, "wb") as f:
        f.write(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    assert sha256_file(target) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_read_json_errors(tmp_path: Path):
    with pytest.raises(SidrecError, match="not found"):
        read_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(SidrecError, match=r"bad.json:2: malformed JSON"):
        read_json(bad)
