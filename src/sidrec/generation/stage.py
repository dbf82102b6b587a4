"""``sidrec evaluate`` and ``sidrec recommend``: decode with the best trained checkpoint."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch

from sidrec.config import Config
from sidrec.data.prepared import PreparedData
from sidrec.errors import SidrecError
from sidrec.generation.beam import beam_search, ranked_items
from sidrec.generation.evaluate import align_sids, evaluate_split, history_batch, n_user_bins, pick_users
from sidrec.generation.exact import exact_topk, overlap_at_k
from sidrec.generation.trie import SIDTrie
from sidrec.io import atomic_open, write_json
from sidrec.metrics.ranking import RankingAccumulator
from sidrec.models.base import SIDGenerator
from sidrec.tokenizers.sid_table import SIDTable


def _load(cfg: Config) -> tuple[SIDGenerator, SIDTable, PreparedData]:
    from sidrec.threads import set_threads
    from sidrec.training.stage import load_trained_model

    set_threads(cfg.train.num_threads)  # same intra-op threads as training (1 on a shared 2-core box)
    model, sids, data = load_trained_model(cfg)
    return model, align_sids(data, sids), data


def _check_eval_config(cfg: Config) -> None:
    ev = cfg.eval
    if ev.beam_size < 1:
        raise SidrecError(f"eval.beam_size must be >= 1, got {ev.beam_size}")
    if ev.batch_size < 1:
        raise SidrecError(f"eval.batch_size must be >= 1, got {ev.batch_size}")


def run_evaluate(cfg: Config, save_predictions: bool = False, exact_users: int = 0, progress: bool = True) -> dict[str, Any]:
    """Beam-search metrics of the best checkpoint on ``cfg.eval.split``.

    Writes ``cfg.paths.eval/metrics.json`` and, with ``save_predictions``,
    ``predictions.jsonl`` (one line per user: ``user_id``, ``target``, ranked
    ``items`` (null = a free-decoded SID that matches no item) and their ``scores``).

    Args:
        cfg: the run config; ``cfg.eval`` sets split, beam, constraint, cut-offs, batch size.
        save_predictions: also write the ranked lists.
        exact_users: also score every item exactly for this many users (seeded sample) and
            report the overlap@k of the beam's and the exact top-k.
        progress: show progress bars.

    Returns:
        The metrics record written to ``metrics.json``.
    """
    _check_eval_config(cfg)
    if exact_users < 0:
        raise SidrecError(f"--exact expects a number of users >= 0, got {exact_users}")
    ev = cfg.eval
    model, sids, data = _load(cfg)
    if save_predictions:
        metrics = _evaluate_and_save(cfg, model, sids, data, progress)
    else:
        metrics = evaluate_split(
            model, data, sids, ev.split, ev.beam_size, ev.constrained, ev.ks, ev.batch_size,
            progress=progress, seed=cfg.seed, filter_seen=ev.filter_seen,
        )  # fmt: skip
    record: dict[str, Any] = {
        "split": ev.split,
        "beam_size": ev.beam_size,
        "constrained": ev.constrained,
        "filter_seen": ev.filter_seen,
        "collision": sids.collision,
        "n_items": data.n_items,
        "metrics": metrics,
    }
    if exact_users:
        record["exact"] = exact_agreement(model, data, sids, cfg, exact_users)
    write_json(cfg.paths.eval / "metrics.json", record)
    return record


def _evaluate_and_save(cfg: Config, model: SIDGenerator, sids: SIDTable, data: PreparedData, progress: bool) -> dict[str, float]:
    """Metrics + ``predictions.jsonl`` through :class:`sidrec.api.Recommender`, the object that
    ``sidrec recommend`` and ``sidrec serve`` use, so the three cannot disagree."""
    from sidrec.api import Recommender
    from sidrec.serve.backends import SIDBackend

    ev = cfg.eval
    rec = Recommender(SIDBackend(cfg, model, sids, data), cfg)
    acc = RankingAccumulator(ev.ks)
    users = pick_users(data.n_users, None, cfg.seed)
    ex = data.eval_examples(ev.split)
    users = users[np.argsort([len(ex.histories[u]) for u in users], kind="stable")]  # similar lengths together
    bins = n_user_bins(model) > 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(users), desc=f"evaluate {ev.split}", unit="user", leave=False)
    t0 = time.perf_counter()
    with atomic_open(cfg.paths.eval / "predictions.jsonl", "w", encoding="utf-8") as f:
        for lo in range(0, len(users), ev.batch_size):
            ub = users[lo : lo + ev.batch_size]
            uids = [data.user_ids[u] for u in ub] if bins else None
            items, scores = rec.rank_indices([ex.histories[u] for u in ub], ev.beam_size, ev.filter_seen, uids)
            acc.add(items, torch.from_numpy(ex.targets[ub]))
            for u, tgt, its, scs in zip(ub.tolist(), ex.targets[ub].tolist(), items.tolist(), scores.tolist()):
                n = sum(1 for s in scs if s != float("-inf"))
                row = {
                    "user_id": data.user_ids[u],
                    "target": data.item_ids[tgt],
                    "items": [rec.item_ids[i] if i >= 0 else None for i in its[:n]],
                    "scores": [round(s, 5) for s in scs[:n]],
                }
                f.write(json.dumps(row) + "\n")
            if bar is not None:
                bar.update(len(ub))
    if bar is not None:
        bar.close()
    out = acc.result()
    out["users_per_second"] = round(len(users) / max(time.perf_counter() - t0, 1e-9), 1)
    out["added_items"] = rec.n_items - data.n_items  # cold-start items served beside the trained ones
    return out


def exact_agreement(model: SIDGenerator, data: PreparedData, sids: SIDTable, cfg: Config, n_users: int) -> dict[str, Any]:
    """Overlap@k between beam search's and the exact top-k on a seeded sample of users.

    Also reports the metrics of the exact ranking on the same users, so the loss due to
    the beam is visible.
    """
    ev = cfg.eval
    users = pick_users(data.n_users, n_users, cfg.seed)
    ex = data.eval_examples(ev.split)
    trie = SIDTrie.build(sids.codes, sids.vocab_sizes, sids.representative)
    k = ev.beam_size
    ks = [c for c in ev.ks if c <= k] or [k]
    overlap = {c: 0.0 for c in ks}
    beam_acc, exact_acc = RankingAccumulator(ev.ks), RankingAccumulator(ev.ks)
    bs = max(1, min(ev.batch_size, 8))  # users per call; x 1024 candidates = 8k SIDs scored at once
    t0 = time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for lo in range(0, len(users), bs):
            ub = users[lo : lo + bs]
            batch = history_batch(model, data, sids, ub, [ex.histories[u] for u in ub])
            beam, _ = ranked_items(beam_search(model, batch, trie, k, ev.constrained))
            exact, _ = exact_topk(model, batch, sids, k, batch_size=1024)
            targets = torch.from_numpy(ex.targets[ub])
            beam_acc.add(beam, targets)
            exact_acc.add(exact, targets)
            for c in ks:
                overlap[c] += float(overlap_at_k(beam, exact, c).sum())
    out: dict[str, Any] = {"users": len(users), "seconds": round(time.perf_counter() - t0, 2)}
    out.update({f"overlap@{c}": overlap[c] / len(users) for c in ks})
    out["beam_metrics"] = beam_acc.result()
    out["exact_metrics"] = exact_acc.result()
    return out


def run_recommend(cfg: Config, history: list[str], k: int = 10) -> dict[str, Any]:
    """Top-``k`` items for a history of external item ids (oldest first), via :class:`sidrec.api.Recommender`.

    Uses ``cfg.eval.beam_size`` (at least ``k``) and ``cfg.eval.constrained``;
    ``cfg.eval.filter_seen`` drops the history's own items. Free-decoded SIDs that
    match no item are left out of the list.

    Returns:
        ``{"history": [...], "recommendations": [{"item_id", "score"}, ...]}``, scores being
        summed SID log-probabilities (SASRec: logits).
    """
    from sidrec.api import Recommender

    if k < 1:
        raise SidrecError(f"recommend needs k >= 1, got {k}")
    if not history:
        raise SidrecError("recommend needs a non-empty history of item ids (--history ID [ID ...])")
    _check_eval_config(cfg)
    rec = Recommender.from_config(cfg)
    try:
        recs = rec.recommend([history], k=k, exclude_seen=cfg.eval.filter_seen)[0]
    except SidrecError as e:
        raise SidrecError(str(e).removeprefix("history 0: ")) from None
    return {"history": list(history), "recommendations": [{"item_id": r.item_id, "score": r.score} for r in recs]}
