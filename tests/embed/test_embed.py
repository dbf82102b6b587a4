from pathlib import Path

import numpy as np
import pytest

from sidrec.cli import main
from sidrec.config import Config, DataConfig, apply_overrides
from sidrec.data import RawDataset, prepare
from sidrec.embed import load_embeddings, render_item_text, resolve_model, run_embed
from sidrec.embed.text import check_text_fields
from sidrec.errors import SidrecError
from sidrec.io import read_json, save_npy
from sidrec.rundir import record_stage


def test_template_skips_missing_fields_and_flattens_categories():
    rec = {"title": "OPI Nail Lacquer", "categories": [["Beauty", "Nails"], ["Gifts"]], "brand": None, "description": "", "price": 9.5}
    text = render_item_text(rec, ("title", "categories", "brand", "description", "price"))
    assert text == "Title: OPI Nail Lacquer; Categories: Beauty > Nails | Gifts; Price: 9.5"
    assert render_item_text(rec, ("brand",)) == ""
    assert render_item_text(rec, ("title", "brand"), "{title} by {brand}") == "OPI Nail Lacquer by"


def test_text_fields_are_checked_against_the_items_table():
    cols = ["title", "categories", "genres"]
    check_text_fields(("title", "genres"), "{title}: {genres}", cols)
    with pytest.raises(SidrecError, match="unknown text field 'colour' in embed.fields; the items table has: title, categories, genres"):
        check_text_fields(("colour",), "", cols)
    with pytest.raises(SidrecError, match=r"embed.template uses \{brand\}, which is not in embed.fields"):
        check_text_fields(("title",), "{title} {brand}", cols)
    with pytest.raises(SidrecError, match="embed.template is malformed"):
        check_text_fields(("title",), "{title", cols)


def test_default_model_resolves_to_bundled_folder():
    path = Path(resolve_model("all-MiniLM-L6-v2"))
    assert (path / "modules.json").is_file() and (path / "model.safetensors").is_file()
    assert resolve_model("org/some-model") == "org/some-model"  # hub names pass through
    with pytest.raises(SidrecError, match="encoder path does not exist: ./no/such/model"):
        resolve_model("./no/such/model")


@pytest.fixture
def prepared(tmp_path: Path) -> Config:
    items = {f"i{n}": {"title": f"{w} shampoo", "categories": [["Beauty", "Hair"]]} for n, w in enumerate(["gentle", "volume", "dry", "oily"])}
    items["i4"] = {"title": "red nail polish", "categories": [["Beauty", "Nails"]]}
    seqs = {f"u{n}": ["i0", "i1", "i2", "i3", "i4"][n:] + ["i0", "i1", "i2", "i3", "i4"][:n] for n in range(5)}
    cfg = apply_overrides(Config(), [f"workdir={tmp_path / 'run'}", "data.min_count=0"])
    prepare(RawDataset("toy", items, seqs), DataConfig(min_count=0), cfg.paths.data)
    return cfg


def test_embed_offline_with_default_encoder_and_cache(prepared: Config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    meta = run_embed(prepared, progress=False)
    emb = load_embeddings(prepared.paths.embeddings, [f"i{n}" for n in range(5)])
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    assert meta["item_ids"] == [f"i{n}" for n in range(5)] and meta["cached"] is False
    # semantically: two shampoos are closer to each other than to the nail polish
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[4]
    again = run_embed(prepared, progress=False)
    assert again["cached"] is True
    np.testing.assert_array_equal(load_embeddings(prepared.paths.embeddings), emb)


def test_embed_missing_encoder_path_is_cli_error(prepared: Config, capsys):
    code = main(["embed", "-w", str(prepared.paths.root), "embed.model=/no/such/encoder"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: encoder path does not exist: /no/such/encoder"


def test_embed_before_prepare_is_cli_error(tmp_path: Path, capsys):
    assert main(["embed", "-w", str(tmp_path)]) == 2
    assert "run `sidrec prepare` first" in capsys.readouterr().err


def test_nan_embeddings_are_rejected_with_row_and_item(prepared: Config):
    out = prepared.paths.embeddings
    out.mkdir(parents=True)
    emb = np.ones((5, 4), dtype=np.float32)
    emb[3, 1] = np.nan
    save_npy(out / "embeddings.npy", emb)
    from sidrec.io import write_json

    write_json(out / "meta.json", {"n_items": 5, "dim": 4, "item_ids": [f"i{n}" for n in range(5)]})
    record_stage(out, inputs=("data",))
    with pytest.raises(SidrecError, match=r"row 3 \(item 'i3'\) has NaN/inf"):
        load_embeddings(out)
    with pytest.raises(SidrecError, match="item order differs"):
        load_embeddings(out, ["i1", "i0", "i2", "i3", "i4"])
    assert read_json(out / "meta.json")["n_items"] == 5
