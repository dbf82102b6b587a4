"""The P5/S3-Rec layout loader and the bad inputs of the foundation issue, through the CLI."""

from pathlib import Path

import pytest

from sidrec.cli import main
from sidrec.config import DataConfig
from sidrec.data import load_dataset
from tests.conftest import write_sequences_dataset

SEQS = {"1": ["1", "2", "3", "4", "5"], "2": ["2", "3", "4", "5", "1"], "3": ["3", "4", "5", "1", "2"]}


def run_cli(args, capsys):
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def test_loads_fixture(tmp_path: Path):
    root = write_sequences_dataset(tmp_path / "ds", SEQS)
    ds = load_dataset(DataConfig(dataset="sequences", path=str(root)))
    assert ds.sequences["2"] == ["2", "3", "4", "5", "1"]
    assert ds.items["1"]["title"] == "item 1"


def test_title_proxy_used_when_title_missing(tmp_path: Path):
    items = {i: {"title": None, "title_proxy": f"proxy {i}"} for i in "12345"}
    root = write_sequences_dataset(tmp_path / "ds", SEQS, items)
    assert load_dataset(DataConfig(path=str(root))).items["3"]["title"] == "proxy 3"


def test_a_catalogues_own_text_fields_are_kept(tmp_path: Path):
    from sidrec.data import PreparedData

    items = {i: {"title": f"song {i}", "genres": ["jazz", "soul"] if i == "1" else None, "asin": f"B{i}"} for i in "12345"}
    root = write_sequences_dataset(tmp_path / "ds", SEQS, items)
    assert load_dataset(DataConfig(path=str(root))).items["1"]["genres"] == ["jazz", "soul"]
    assert main(["prepare", str(root), "-q", "-w", str(tmp_path / "run"), "data.min_count=3"]) == 0
    data = PreparedData(tmp_path / "run" / "data")
    assert data.text_columns == ["title", "categories", "brand", "description", "price", "genres"]  # ids (asin) are not text
    assert data.item_texts()[data.item_index()["1"]]["genres"] == ["jazz", "soul"]


def test_prepare_cli_prints_split_table(tmp_path: Path, capsys):
    root = write_sequences_dataset(tmp_path / "ds", SEQS)
    assert main(["prepare", str(root), "-w", str(tmp_path / "run"), "data.min_count=3"]) == 0
    out = capsys.readouterr().out
    assert "sliding-window samples" in out and "| users" in out
    assert (tmp_path / "run" / "data" / "manifest.json").is_file()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: (r / "sequences.txt").unlink(), r"sequences file not found: .*sequences.txt"),
        (lambda r: (r / "items.jsonl").unlink(), r"items file not found: .*items.jsonl"),
        (lambda r: (r / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 2, "title": \n'), r"items.jsonl:2: malformed JSON"),
        (lambda r: (r / "items.jsonl").write_text('{"title": "x"}\n'), r"items.jsonl:1: expected an object with an 'item_id'"),
        (lambda r: (r / "items.jsonl").write_text('{"item_id": 1}\n{"item_id": 1}\n'), r"items.jsonl:2: duplicate item id '1'"),
        (lambda r: (r / "items.jsonl").write_text("".join(f'{{"item_id": {i}}}\n' for i in (1, 2, 3, 4))), r"sequences.txt:1: item '5' of user '1' has no record in .*items.jsonl"),
        (lambda r: (r / "sequences.txt").write_text("1 1 2 3\n2\n"), r"sequences.txt:2: user '2' has no items"),
        (lambda r: (r / "sequences.txt").write_text("1 1 2 3\n1 2 3 4\n"), r"sequences.txt:2: duplicate user id '1'"),
        (lambda r: None, r"no user is left after 50-core filtering"),
    ],
)
def test_bad_input_is_one_line_error_with_exit_2(tmp_path: Path, capsys, mutate, message):
    root = write_sequences_dataset(tmp_path / "ds", SEQS)
    mutate(root)
    code, err = run_cli(["prepare", str(root), "-w", str(tmp_path / "run"), "data.min_count=50"], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()


def test_missing_data_directory(tmp_path: Path, capsys):
    code, err = run_cli(["prepare", str(tmp_path / "absent"), "-w", str(tmp_path / "run")], capsys)
    assert code == 2 and "data directory not found" in err


def test_unknown_dataset_lists_available(tmp_path: Path, capsys):
    code, err = run_cli(["prepare", "-w", str(tmp_path), "data.dataset=nope"], capsys)
    assert code == 2 and "unknown dataset 'nope'; available:" in err and "sequences" in err
