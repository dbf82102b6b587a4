"""Run integrity (issue 15): each fault class reproduced on a tiny run directory, and shown handled."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sidrec.cli import main
from sidrec.config import load_config
from sidrec.data import PreparedData, prepare
from sidrec.errors import SidrecError
from sidrec.io import load_npy, save_npy, sha256_file, write_json
from sidrec.rundir import LOCK, check_stage, commit_stage, lock, record_stage
from sidrec.training.loop import BEST, BEST_META
from tests.generation.toy_generator import write_toy_prepared

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.min_count=0", "data.max_history=5", "tokenizer.method=rkmeans", "tokenizer.n_levels=2", "tokenizer.codebook_size=4",
    "model.n_enc_layers=1", "model.n_dec_layers=1", "model.n_heads=2", "model.d_model=16", "model.head_dim=8", "model.d_ff=32",
    "train.max_steps=6", "train.eval_every=3", "train.batch_size=16", "train.device=cpu", "train.num_threads=1",
    "train.val_users=8", "train.warmup_steps=2", "eval.beam_size=10", "eval.ks=1,5", "eval.batch_size=8",
]  # fmt: skip


def _cfg(root: Path, *extra: str):  # noqa: ANN202
    return load_config(None, [f"workdir={root}", *TINY, *extra])


def _embed(root: Path, dim: int = 12, meta_dim: int | None = None) -> None:
    """Random vectors committed the way ``sidrec embed`` commits them (no encoder download)."""
    data = PreparedData(root / "data")
    with commit_stage(root / "embeddings", inputs=("data",)) as tmp:
        save_npy(tmp / "embeddings.npy", np.random.default_rng(0).normal(size=(data.n_items, dim)).astype(np.float32))
        write_json(tmp / "meta.json", {"n_items": data.n_items, "dim": meta_dim or dim, "item_ids": data.item_ids})


def _run(argv: list[str], capsys) -> tuple[int, str]:  # noqa: ANN001
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from sidrec.tokenizers.stage import run_tokenize
    from sidrec.training.recipes import train

    root = tmp_path_factory.mktemp("rundir") / "run"
    write_toy_prepared(root / "data")
    _embed(root)
    run_tokenize(_cfg(root), progress=False)
    train(_cfg(root), progress=False)
    return root


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A private copy of the trained run (content-addressed records survive a copy)."""
    shutil.copytree(trained, tmp_path / "run", ignore=shutil.ignore_patterns(LOCK))
    return tmp_path / "run"


# 1 ------------------------------------------------------------------ a typo never costs the previous run


@pytest.mark.parametrize(
    "override,message",
    [("model.dropout=2", "model.dropout must be in [0, 1), got 2.0"), ("train.lr=nan", "train.lr must be a finite number > 0, got nan"),
     ("train.lr=-1e-3", "train.lr must be a finite number > 0, got -0.001"), ("model.n_enc_layers=0", "model.n_enc_layers must be >= 1, got 0"),
     ("model.n_heads=0", "model.n_heads must be >= 1, got 0"), ("data.max_history=0", "data.max_history must be >= 1, got 0")],
)  # fmt: skip
def test_out_of_range_values_are_refused_before_anything_is_touched(run, capsys, override, message):
    before = {n: sha256_file(run / "model" / n) for n in (BEST, BEST_META, "last.safetensors", "train_summary.json")}
    code, err = _run(["train", "-w", str(run), "-q", "--overwrite", *TINY, override], capsys)
    assert code == 2 and err == f"error: {message}\n"
    assert before == {n: sha256_file(run / "model" / n) for n in before}


def test_a_fresh_train_over_a_previous_run_needs_overwrite(run, capsys):
    best = sha256_file(run / "model" / BEST)
    code, err = _run(["train", "-w", str(run), "-q", *TINY], capsys)
    assert code == 2 and "holds a previous training run" in err and "--overwrite" in err and err.count("\n") == 1
    assert sha256_file(run / "model" / BEST) == best
    assert _run(["train", "-w", str(run), "-q", "--overwrite", *TINY, "seed=5"], capsys)[0] == 0
    assert check_stage(run / "model")  # the new run is whole and recorded


@pytest.mark.parametrize("finished", [False, True])
def test_a_pipeline_killed_before_its_first_checkpoint_starts_over_and_a_finished_run_is_kept(run, finished):
    """Best weights are written just before their evaluation's checkpoint: a kill in between must not block `sidrec run`."""
    from sidrec.pipeline import run_pipeline

    (run / "model" / "last.safetensors").unlink()  # as if killed after the first best.safetensors, before last.safetensors
    if not finished:
        (run / "model" / "train_summary.json").unlink()
    best = sha256_file(run / "model" / BEST)
    if finished:  # a finished run whose checkpoint was deleted keeps its results: a fresh start needs --overwrite
        with pytest.raises(SidrecError, match="holds a previous training run"):
            run_pipeline(_cfg(run), progress=False, stages=("train",))
        assert sha256_file(run / "model" / BEST) == best
    else:
        run_pipeline(_cfg(run, "seed=5"), progress=False, stages=("train",))
        assert (run / "model" / "last.safetensors").is_file() and (run / "model" / "train_summary.json").is_file()
        assert check_stage(run / "model") and sha256_file(run / "model" / BEST) != best  # trained again, whole and recorded


def test_the_resumable_checkpoints_are_those_the_recipes_write():
    from sidrec.rundir import MODEL_RESULTS, RESUMABLE
    from sidrec.training.loop import LAST
    from sidrec.training.sasrec import CHECKPOINT

    assert set(RESUMABLE) == {LAST, CHECKPOINT} and set(RESUMABLE) <= set(MODEL_RESULTS)


# 2 ------------------------------------------------------------------ stages are committed whole


def test_a_failing_stage_leaves_the_previous_one_untouched(run):
    before = check_stage(run / "data")
    with pytest.raises(RuntimeError), commit_stage(run / "data") as tmp:
        (tmp / "items.parquet").write_bytes(b"half")
        raise RuntimeError("killed")
    assert check_stage(run / "data") == before and not [p for p in run.iterdir() if ".tmp-" in p.name]


def test_a_commit_killed_between_its_two_renames_rolls_back(run):
    before = check_stage(run / "data")
    os.replace(run / "data", run / ".data.old-999999")  # the first rename happened, the second not
    shutil.copytree(run / ".data.old-999999", run / ".data.tmp-999999")
    (run / ".data.tmp-999999" / "items.parquet").write_bytes(b"half written")
    (run / "model" / ".best.json.abc.tmp").write_text("{")  # an io.atomic_path temporary
    with pytest.raises(SidrecError, match="prepared data manifest not found"):
        PreparedData(run / "data")
    with lock(run):  # the next writer restores the old stage and clears the temporaries
        pass
    assert check_stage(run / "data") == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [LOCK]
    assert not (run / "model" / ".best.json.abc.tmp").exists()


def test_a_damaged_file_is_refused_by_every_reader(run, capsys):
    raw = (run / "data" / "sequences.parquet").read_bytes()
    (run / "data" / "sequences.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SidrecError, match=r"sequences.parquet does not match its stage record .*re-run `sidrec prepare`"):
        PreparedData(run / "data")
    code, err = _run(["evaluate", "-w", str(run), "-q", *TINY], capsys)
    assert code == 2 and "sequences.parquet does not match its stage record" in err and err.count("\n") == 1


def _kill_harness():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("kill_stages", REPO / "benchmarks" / "kill_stages.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kill_minus_9_during_prepare_and_tokenize_never_leaves_an_accepted_mixed_directory(tmp_path):
    """A small version of benchmarks/kill_stages.py (which runs 20+ kills per stage, train included)."""
    import random

    ks = _kill_harness()
    root, refs = ks.setup(tmp_path, train=False)
    rng = random.Random(0)
    results = [ks.trial("prepare", root, refs, rng) for _ in range(2)]
    for s in ("prepare", "embed", "tokenize"):
        ks.run_stage(s, root, 0)
    results.append(ks.trial("tokenize", root, refs, rng))
    for r in results:
        assert r["state"] in ("A", "B", "refused"), r  # a whole version, or a one-line refusal
        assert r["downstream_ok"] and not r["temps_left"] and r["lock_s"] < 1.0, r


# 3 ------------------------------------------------------------------ stale artifacts are refused


def test_retokenizing_after_training_is_refused_by_evaluate_and_recommend(run, capsys):
    from sidrec.tokenizers.stage import run_tokenize

    run_tokenize(_cfg(run, "tokenizer.seed=1"), progress=False)  # same sizes, other SIDs
    for cmd in (["evaluate"], ["recommend", "--history", "i3", "i4"]):
        code, err = _run([*cmd, "-w", str(run), "-q", *TINY], capsys)
        assert code == 2 and err.count("\n") == 1
        assert "model/" in err and "was built from another tokenizer/ (" in err and "sids.csv" in err and "re-run `sidrec train`" in err


def test_a_deterministic_refit_keeps_evaluate_and_resume_working(run, capsys):
    """Same config, same SIDs and weights, other timings in sid_metrics.json: nothing the model was built from changed."""
    from sidrec.tokenizers.stage import run_tokenize

    sids = (run / "tokenizer" / "sids.csv").read_bytes()
    metrics = (run / "tokenizer" / "sid_metrics.json").read_bytes()
    run_tokenize(_cfg(run), progress=False)
    assert (run / "tokenizer" / "sids.csv").read_bytes() == sids
    with commit_stage(run / "tokenizer", inputs=("embeddings",), keep=True) as tmp:
        report = json.loads((tmp / "sid_metrics.json").read_text())  # the refit's clock may tick alike: make sure
        write_json(tmp / "sid_metrics.json", {**report, "fit_seconds": report["fit_seconds"] + 1.0})
    assert (run / "tokenizer" / "sid_metrics.json").read_bytes() != metrics
    code, err = _run(["evaluate", "-w", str(run), "-q", *TINY], capsys)
    assert code == 0, err
    code, err = _run(["train", "-w", str(run), "-q", "--resume", *TINY], capsys)
    assert code == 0, err


def test_repreparing_other_data_is_refused_by_every_later_stage(run, capsys):
    from tests.generation.toy_generator import write_toy_prepared as write

    scratch = run.parent / "other"
    write(scratch / "data", seed=1)  # other users' sequences, same item ids
    shutil.rmtree(run / "data")
    shutil.copytree(scratch / "data", run / "data")
    for cmd in (["tokenize"], ["train", "--resume"], ["evaluate"]):
        code, err = _run([*cmd, "-w", str(run), "-q", *TINY], capsys)
        assert code == 2 and "was built from another data/ (" in err and "sequences.parquet" in err, (cmd, err)


# 4 ------------------------------------------------------------------ one writer per run directory


def test_a_second_writer_fails_at_once_naming_the_holder(run):
    from sidrec.training.recipes import train

    code = "import sys, time\nfrom sidrec.rundir import lock\nwith lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(SidrecError, match=rf"run directory .* is in use by another sidrec process \(pid {holder.pid}\)"):
            train(_cfg(run), progress=False, overwrite=True)
        assert time.perf_counter() - t0 < 1.0
    finally:
        holder.kill()
        holder.wait()
    with lock(run):  # the dead holder's lock (its pid still in the file) is simply taken over
        assert (run / LOCK).read_text().strip() == str(os.getpid())


# 5 ------------------------------------------------------------------ resume refuses what it cannot continue


def test_cli_resume_lists_changed_settings_and_says_when_there_is_nothing(run, tmp_path, capsys):
    code, err = _run(["train", "-w", str(run), "-q", "--resume", *TINY, "train.lr=1e-2", "train.batch_size=8"], capsys)
    assert code == 2 and "settings changed (train.batch_size: 16 -> 8; train.lr: 0.0005 -> 0.01)" in err
    fresh = tmp_path / "fresh"
    write_toy_prepared(fresh / "data")
    _embed(fresh)
    code, err = _run(["train", "-w", str(fresh), "-q", "--resume", *TINY], capsys)
    assert code == 2 and err.startswith("error: nothing to resume") and err.count("\n") == 1


# 7 ------------------------------------------------------------------ bench names are not paths


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", ".hidden", ""])
def test_unsafe_bench_names_are_refused(tmp_path, name, capsys):
    from sidrec.bench.suite import load_suite

    with pytest.raises(SidrecError, match="is not a safe name"):
        load_suite(name, tmp_path)
    (tmp_path / "s.yaml").write_text(f"name: s\nruns:\n  - name: {name!r}\n")
    with pytest.raises(SidrecError, match="is not a safe name"):
        load_suite("s", tmp_path)
    (tmp_path / "t.yaml").write_text(f"name: {name!r}\nruns:\n  - name: ok\n")
    with pytest.raises(SidrecError, match="is not a safe name"):
        load_suite("t", tmp_path)


# 8 ------------------------------------------------------------------ silent wrong results


def test_non_finite_weights_are_refused(run, capsys):
    w = load_file(str(run / "model" / BEST))
    name = next(iter(w))
    w[name][...] = float("nan")
    save_file(w, str(run / "model" / BEST))
    record_stage(run / "model", (BEST, BEST_META), ("data", "tokenizer"))  # a diverged run, recorded as training would
    for cmd in (["evaluate"], ["recommend", "--history", "i3"]):
        code, err = _run([*cmd, "-w", str(run), "-q", *TINY], capsys)
        assert code == 2 and f"weight {name!r} holds NaN/inf values" in err and err.count("\n") == 1


def test_embeddings_wider_than_their_metadata_are_refused(tmp_path):
    from sidrec.embed.stage import load_embeddings

    write_toy_prepared(tmp_path / "data")
    _embed(tmp_path, dim=12, meta_dim=16)
    with pytest.raises(SidrecError, match="rows have width 12, but .*meta.json says dim 16"):
        load_embeddings(tmp_path / "embeddings")


# 9 ------------------------------------------------------------------ one line, exit 2, for damaged input


def test_damaged_inputs_are_one_line_errors(run, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "sequences.txt").write_bytes(b"u1 a b c d\nu2 \xff\xfe b c d\n")
    (src / "items.jsonl").write_text('{"item_id": "a", "title": "A"}\n', encoding="utf-8")
    code, err = _run(["prepare", str(src), "-w", str(tmp_path / "r"), "data.dataset=sequences"], capsys)
    assert code == 2 and f"{src}: input is not UTF-8 text" in err and err.count("\n") == 1
    (src / "sequences.txt").write_text("u1 a a a a\n", encoding="utf-8")
    afile = tmp_path / "a-file"
    afile.write_text("x")
    code, err = _run(["prepare", str(src), "-w", str(afile), "data.min_count=0"], capsys)
    assert code == 2 and f"run directory {afile} is a file" in err
    code, err = _run(["train", "-w", str(afile / "sub"), "-q", *TINY], capsys)
    assert code == 2 and "is a file" in err and err.count("\n") == 1


def test_truncated_and_object_npy_are_one_line_errors(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SidrecError, match="obj.npy: unreadable embeddings"):
        load_npy(tmp_path / "obj.npy", "embeddings")
    np.save(tmp_path / "ok.npy", np.ones((50, 8), dtype=np.float32))
    raw = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[:300])
    with pytest.raises(SidrecError, match="short.npy: unreadable embeddings"):
        load_npy(tmp_path / "short.npy", "embeddings")


@pytest.mark.parametrize("target", ["tokenizer/sids.csv", "tokenizer/sid_table.json", f"model/{BEST}", "model/last.safetensors"])
def test_truncated_sid_table_and_checkpoints_are_one_line_errors(run, capsys, target):
    path = run / target
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    if target.startswith("model/"):  # even re-recorded (so the checksum passes), the damage is found on load
        record_stage(run / "model", (BEST, BEST_META), ("data", "tokenizer"))
    cmd = ["train", "--resume"] if target.endswith("last.safetensors") else ["evaluate"]
    code, err = _run([*cmd, "-w", str(run), "-q", *TINY], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert ("does not match its stage record" in err) or ("damaged" in err), err
    assert "Traceback" not in err


def test_a_damaged_sid_table_is_a_one_line_error_even_when_read_directly(tmp_path):
    from sidrec.tokenizers.sid_table import SIDTable

    SIDTable.build(["a", "b"], np.array([[0, 1], [1, 0]]), [2, 2], "digit").save(tmp_path)
    write_json(tmp_path / "sid_table.json", {"collision": "digit", "vocab_sizes": [2, 2, 1], "representative": [0, 7]})
    with pytest.raises(SidrecError, match="damaged SID table"):
        SIDTable.load(tmp_path)
    write_json(tmp_path / "sid_table.json", {"collision": "digit", "vocab_sizes": [1, 1, 1], "representative": [0, 1]})
    with pytest.raises(SidrecError, match="do not fit the vocabulary sizes"):
        SIDTable.load(tmp_path)
    (tmp_path / "sids.csv").write_bytes(b"item_id,c0,c1,dedup\n\xff,0,1,0\n")
    with pytest.raises(SidrecError, match="not UTF-8 text"):
        SIDTable.load(tmp_path)


def test_nothing_in_src_loads_pickles():
    """No torch.load without weights_only=True, no allow_pickle=True, no pickle module (issue 15, class 6)."""
    offenders = []
    for p in (REPO / "src").rglob("*.py"):
        text = p.read_text(encoding="utf-8")
        for bad in ("weights_only=False", "allow_pickle=True", "import pickle", "torch.load("):
            if bad in text:
                offenders.append(f"{p.relative_to(REPO)}: {bad}")
    assert offenders == []


def test_torch_state_round_trips_through_the_checkpoint_format(tmp_path):
    from sidrec.checkpoint import load_state, save_state

    g = torch.Generator().manual_seed(3)
    state = {"t": torch.randn(3, generator=g), 0: (1, 2.5, None), "rng": np.random.RandomState(1).get_state(), "inf": -float("inf")}
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert torch.equal(back["t"], state["t"]) and back[0] == (1, 2.5, None) and back["inf"] == -float("inf")
    assert back["rng"][0] == "MT19937" and np.array_equal(back["rng"][1], state["rng"][1])


def test_a_run_directory_from_before_stage_records_is_refused_then_adopted(run, capsys):
    from sidrec.rundir import RECORD, adopt

    for stage in ("data", "embeddings", "tokenizer", "model"):
        (run / stage / RECORD).unlink()
    code, err = _run(["evaluate", "-w", str(run), "-q", *TINY], capsys)
    assert code == 2 and "has no stage record" in err and err.count("\n") == 1
    assert adopt(run) == ["data", "embeddings", "tokenizer", "model"]
    assert _run(["evaluate", "-w", str(run), "-q", *TINY], capsys)[0] == 0
