"""The Python API: one Recommender behind `sidrec recommend`, `evaluate --save-predictions` and the service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidrec import Recommendation, Recommender
from sidrec.cli import main
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from tests.serve.conftest import TINY


def test_catalogue_text_columns_reach_the_encoder(genre_run: Path):
    data = PreparedData(genre_run / "data")
    assert data.text_columns[-2:] == ["genres", "label"]  # the catalogue's own columns are kept
    meta = json.loads((genre_run / "embeddings" / "meta.json").read_text())
    assert meta["fields"] == ["title", "genres"] and meta["example_text"] == "jazz record 0. Genres: jazz"
    rec = Recommender.load(genre_run)
    assert rec.text_fields == ("title", "genres") and rec.method == "sid" and rec.n_items == 40
    assert rec.item("te3")["fields"] == {"title": "techno record 3", "genres": "techno", "label": "x"}


def test_embed_refuses_a_field_the_items_table_lacks(genre_run: Path, capsys):
    assert main(["embed", "-w", str(genre_run), "-q", "embed.fields=[title,mood]"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown text field 'mood' in embed.fields; the items table has: title,")


def test_recommend_returns_item_ids_with_scores(genre_run: Path):
    rec = Recommender.load(genre_run)
    out = rec.recommend([["te1", "te2", "te3"], ["ja0"]], k=5)
    assert len(out) == 2 and all(len(row) == 5 for row in out)
    assert all(isinstance(r, Recommendation) and r.item_id in rec for row in out for r in row)
    assert [r.score for r in out[0]] == sorted((r.score for r in out[0]), reverse=True)
    # techno histories get techno items (the genre is the first SID token the model learned)
    assert sum(r.item_id.startswith("te") for r in out[0]) >= 4
    seen = rec.recommend([["te1", "te2", "te3"]], k=5, exclude_seen=True)[0]
    assert not {"te1", "te2", "te3"} & {r.item_id for r in seen}


@pytest.mark.parametrize(
    ("histories", "k", "message"),
    [
        ([["te1", "nope"]], 5, "history 0: unknown item ids 'nope': not among the 40 items"),
        ([["te1"], []], 5, "history 1: a history needs at least one item id"),
        ([["te1"]], 0, "k must be a positive integer, got 0"),
        ([["te1"]], 41, "k must be at most the number of items (40), got 41"),
        (["te1"], 5, "history 0 must be a list of item ids, got the string 'te1'"),
    ],
)
def test_bad_requests_name_the_problem(genre_run: Path, histories, k, message):
    rec = Recommender.load(genre_run)
    with pytest.raises(SidrecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rec.recommend(histories, k=k)


def test_cli_recommend_and_evaluate_agree_with_the_api(genre_run: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(genre_run, run)
    assert main(["evaluate", "-w", str(run), "-q", "--save-predictions", *TINY]) == 0
    preds = [json.loads(x) for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    data = PreparedData(run / "data")
    ex = data.eval_examples("test")
    rec = Recommender.load(run)
    users = [data.user_ids.index(p["user_id"]) for p in preds[:30]]
    lists = rec.recommend([[data.item_ids[i] for i in ex.histories[u]] for u in users], k=12)
    for p, row in zip(preds, lists):
        assert p["items"] == [r.item_id for r in row] and p["scores"] == [r.score for r in row]
    capsys.readouterr()
    hist = [data.item_ids[i] for i in ex.histories[users[0]]]
    assert main(["recommend", "-w", str(run), "--history", *hist, "-k", "12", *TINY]) == 0
    cli = json.loads(capsys.readouterr().out)["recommendations"]
    assert cli == [{"item_id": r.item_id, "score": r.score} for r in lists[0]]
