"""Training FLOPs per sample (forward + backward) of a run's model on its real training data.

    python benchmarks/train_flops.py -w RUN [--batches 40]

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (matmul-class ops, 2 FLOPs per
multiply-add) over ``--batches`` training batches spread evenly over epoch 0, with and
without ``train.sub_windows``, using the run's ``run_config.yaml`` (model, SIDs, data).
Divide a measured samples/s by it to see how close training runs to the machine's GEMM
rate: BENCHMARKS.md uses it to show that CPU training of the default model is FLOP-bound.
The last stdout line is a flat JSON dict of numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from sidrec.config import load_config
from sidrec.data.prepared import PreparedData
from sidrec.models import build_model
from sidrec.tokenizers.sid_table import SIDTable
from sidrec.training.loop import _LossModule
from sidrec.training.stage import build_train_data


def flops_per_sample(run: Path, sub_windows: bool, n_batches: int) -> float:
    """Mean forward + backward FLOPs per training sample over ``n_batches`` batches."""
    cfg = load_config(run / "run_config.yaml", [f"train.sub_windows={str(sub_windows).lower()}"])
    data, sids = PreparedData(cfg.paths.data), SIDTable.load(cfg.paths.tokenizer)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, sids.vocab_sizes, data.max_history)
    loss_of = _LossModule(model)
    train = build_train_data(cfg, data, sids, getattr(model, "train_unit", "sample"))
    batches = train.epoch_batches(0)
    flops = samples = 0
    for units in batches[:: max(1, len(batches) // n_batches)][:n_batches]:
        b = train.make_batch(units)
        with FlopCounterMode(display=False) as counter:
            loss_of(b).backward()
        flops += counter.get_total_flops()
        samples += b.n_global
    return flops / samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-w", "--workdir", type=Path, required=True, help="a run directory with run_config.yaml")
    p.add_argument("--batches", type=int, default=40)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = {f"mflop_per_sample_sub_windows_{s}": round(flops_per_sample(args.workdir, s, args.batches) / 1e6, 1) for s in (False, True)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
