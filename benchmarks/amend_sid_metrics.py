"""Add SID metrics that a record's code did not compute yet, from the run's own saved artifacts.

    python benchmarks/amend_sid_metrics.py RECORD.json RUN_DIR

Loads the fitted tokenizer (``RUN_DIR/tokenizer``) and the embeddings it was fitted on
(``RUN_DIR/embeddings``), re-encodes (a fitted tokenizer's ``encode`` is deterministic) and
checks that the codes equal the run's SID table before anything is written; then adds the
``tokenize/...`` keys of :func:`sidrec.metrics.sid_quality.sid_quality` that the record lacks
(e.g. the own-space SC/PD of issue 14) and notes them under ``amended`` with the commit.
Existing keys are never changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from sidrec.bench.runner import _flatten, git_state
from sidrec.data.prepared import PreparedData
from sidrec.embed.stage import load_embeddings
from sidrec.io import write_json
from sidrec.metrics.sid_quality import sid_quality
from sidrec.tokenizers.base import Tokenizer
from sidrec.tokenizers.sid_table import SIDTable


def main() -> None:
    record_path, run = Path(sys.argv[1]), Path(sys.argv[2])
    rec = json.loads(record_path.read_text(encoding="utf-8"))
    data = PreparedData(run / "data")
    x = load_embeddings(run / "embeddings", data.item_ids)
    tok = Tokenizer.load(run / "tokenizer")
    codes = tok.encode(x)
    table = SIDTable.load(run / "tokenizer")
    pos = {item: n for n, item in enumerate(table.item_ids)}
    saved = table.codes[[pos[i] for i in data.item_ids], : codes.shape[1]]
    if not np.array_equal(saved, codes):
        sys.exit(f"{run}: re-encoded codes differ from the run's SID table; nothing amended")
    fresh = _flatten({"tokenize": sid_quality(x, codes, tok.codebook_sizes, latent=tok.latent(x))})
    added = {k: v for k, v in fresh.items() if k not in rec["metrics"]}
    rec["metrics"].update(added)
    rec.setdefault("amended", []).append({"keys": sorted(added), "git": git_state(), "command": " ".join(sys.argv)})
    write_json(record_path, rec)
    print(f"{record_path}: added {len(added)} keys")


if __name__ == "__main__":
    main()
