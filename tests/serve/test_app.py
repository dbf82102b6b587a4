"""The HTTP service, in process (fastapi TestClient, no network)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sidrec import Recommender
from sidrec.cli import main
from sidrec.data.prepared import PreparedData
from sidrec.serve.app import ServeSettings, create_app
from sidrec.serve.batching import MicroBatcher
from tests.serve.conftest import TINY


def client(run: Path, **settings) -> TestClient:
    return TestClient(create_app(Recommender.load(run), ServeSettings(**settings)))


def test_service_returns_what_evaluate_saved(genre_run: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(genre_run, run)
    assert main(["evaluate", "-w", str(run), "-q", "--save-predictions", *TINY]) == 0
    preds = {(p := json.loads(x))["user_id"]: p for x in (run / "eval" / "predictions.jsonl").read_text().splitlines()}
    data = PreparedData(run / "data")
    ex = data.eval_examples("test")
    users = list(range(0, data.n_users, 7))
    with client(run) as c:
        r = c.post("/recommend", json={"histories": [[data.item_ids[i] for i in ex.histories[u]] for u in users], "k": 12})
        assert r.status_code == 200
        for u, row in zip(users, r.json()["recommendations"]):
            p = preds[data.user_ids[u]]
            assert [x["item_id"] for x in row] == p["items"] and [x["score"] for x in row] == p["scores"]
        one = c.post("/recommend", json={"history": [data.item_ids[i] for i in ex.histories[users[0]]], "k": 12}).json()
        assert one["recommendations"][0] == r.json()["recommendations"][0]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"history": ["te1", "ghost"]}, 400, "unknown item ids 'ghost'"),
        ({"histories": [["te1"], ["ja1", "ghost"]]}, 400, "history 1: unknown item ids 'ghost'"),
        ({"history": []}, 400, "a history needs at least one item id"),
        ({"histories": []}, 400, "'histories' is empty"),
        ({"history": ["te1"], "k": 0}, 400, "k must be between 1 and 40, got 0"),
        ({"history": ["te1"], "k": 500}, 400, "k must be between 1 and 40, got 500"),
        ({"history": ["te1"], "k": "ten"}, 422, "k"),
        ({"history": ["te1"], "histories": [["te1"]]}, 422, "exactly one of 'history'"),
        ({}, 422, "exactly one of 'history'"),
        ({"history": "te1"}, 422, "history"),
        ({"history": ["te1"], "beam": 3}, 422, "beam"),
    ],
)
def test_bad_recommend_requests_are_4xx_naming_the_problem(genre_run: Path, body, status, detail):
    with client(genre_run) as c:
        r = c.post("/recommend", json=body)
        assert r.status_code == status, r.text
        assert detail in json.dumps(r.json()["detail"])
        assert c.get("/health").json()["status"] == "ok"  # still serving


def test_items_endpoints(run_copy: Path):
    with client(run_copy) as c:
        assert c.get("/items/te3").json() == {
            "item_id": "te3", "sid": c.get("/items/te3").json()["sid"], "added": False, "recommendable": True,
            "fields": {"title": "techno record 3", "genres": "techno", "label": "x"},
        }  # fmt: skip
        assert c.get("/items/nope").status_code == 404 and "unknown item id 'nope'" in c.get("/items/nope").json()["detail"]
        bad = [
            ({"items": [{"item_id": "n1"}]}, "none of the text fields this run was embedded with (title, genres)"),
            ({"items": [{"item_id": "n1", "title": "x", "mood": "calm"}]}, "unknown field 'mood'; this run embeds: title, genres"),
            ({"items": [{"item_id": "te3", "title": "again"}]}, "item id 'te3' is already in the catalogue"),
        ]
        for body, detail in bad:
            r = c.post("/items", json=body)
            assert r.status_code == 400 and detail in r.json()["detail"], r.text
        assert c.post("/items", json={"items": []}).status_code == 422
        assert c.get("/health").json()["items"] == 40  # nothing was added by the refused requests


def test_cold_item_is_recommended_next_to_its_neighbours_and_survives_a_restart(run_copy: Path):
    history = ["te2", "te5", "te6", "te7", "te9"]
    with client(run_copy) as c:
        before = [x["item_id"] for x in c.post("/recommend", json={"history": history, "k": 12, "exclude_seen": True}).json()["recommendations"][0]]
        r = c.post("/items", json={"items": [{"item_id": "new-techno", "title": "techno record 42", "genres": "techno"},
                                             {"item_id": "new-reggae", "genres": "reggae"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        added = r.json()
        assert added["added"] == ["new-techno", "new-reggae"]
        assert added["sids"][0][0] == c.get("/items/te5").json()["sid"][0]  # the techno prefix
        # the reggae group (0, 2) already holds 10 items, the largest de-dup digit the model knows
        assert added["unreachable"] == ["new-reggae"]
        after = [x["item_id"] for x in c.post("/recommend", json={"history": history, "k": 12, "exclude_seen": True}).json()["recommendations"][0]]
    assert "new-techno" not in before and "new-techno" in after
    assert (run_copy / "serve" / "items.jsonl").is_file()
    with client(run_copy) as c:  # a restart: a new process would load the same files
        item = c.get("/items/new-techno").json()
        assert item["sid"] == added["sids"][0] and item["added"] and item["fields"] == {"title": "techno record 42", "genres": "techno"}
        again = [x["item_id"] for x in c.post("/recommend", json={"history": history, "k": 12, "exclude_seen": True}).json()["recommendations"][0]]
        assert again == after
        # a history may contain the new item
        assert c.post("/recommend", json={"history": ["te2", "new-techno"]}).status_code == 200


def test_concurrent_requests_are_decoded_together(genre_run: Path):
    rec = Recommender.load(genre_run)
    hists = [["te1", "te2"], ["ja3"], ["op1", "op2", "op4"], ["re5"]]
    alone = [rec.recommend([h], k=6)[0] for h in hists]
    batcher = MicroBatcher(rec, max_batch=8, max_wait_ms=300)
    try:
        futures = [batcher.submit([rec.item_indices(h)], 6, False) for h in hists]
        rows = [f.result(timeout=30)[0] for f in futures]
    finally:
        batcher.close()
    assert batcher.batches == 1 and rows == alone


def test_openapi_schema_and_docs(genre_run: Path):
    with client(genre_run) as c:
        schema = c.get("/openapi.json").json()
        assert {"/recommend", "/items", "/items/{item_id}", "/health"} <= set(schema["paths"])
        assert c.get("/docs").status_code == 200


def test_add_items_is_refused_with_a_reason_for_sasrec(genre_run: Path, tmp_path: Path):
    run = tmp_path / "sas"
    shutil.copytree(genre_run / "data", run / "data")
    small = ["sasrec.max_epochs=1", "sasrec.d_model=16", "sasrec.n_layers=1", "sasrec.n_heads=1"]
    assert main(["train", "-q", "-w", str(run), "--method", "sasrec", *small]) == 0
    with client(run) as c:
        assert len(c.post("/recommend", json={"history": ["te1"], "k": 3}).json()["recommendations"][0]) == 3
        r = c.post("/items", json={"items": [{"item_id": "n", "title": "t"}]})
        assert r.status_code == 400 and "SASRec learns one embedding per item id" in r.json()["detail"]
