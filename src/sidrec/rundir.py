"""The run directory: its layout, the writer lock, whole-stage commits and input checksums.

Every stage goes through this module, so the guarantees of ``docs/run-directory.md``
live in one place:

- **Layout.** ``RUN/{data,embeddings,tokenizer,model,eval}``; each stage directory
  holds a record, ``stage.json``: the sha256 of every file the stage wrote, and the
  file checksums of the sibling stages it was built from (its *inputs*).
- **Atomic stages.** ``prepare``, ``embed`` and ``tokenize`` write into a temporary
  sibling (``RUN/.tokenizer.tmp-PID``) and swap it in with renames
  (:func:`commit_stage`): a reader sees the old stage, the new stage or (for the
  instant between two renames) none, never a mix. ``train`` writes incrementally
  (resumable checkpoints) and re-records ``model/stage.json`` after each best checkpoint.
- **Checked reads.** :func:`check_stage` re-hashes a stage's files against its record
  and, recursively, its inputs against theirs (model -> tokenizer -> embeddings -> data):
  a damaged file, a half-written stage or an input rebuilt since is a one-line error
  that names what changed and the command to re-run. *Reports* (:data:`REPORTS`: metrics
  and plots about a stage, with wall-clock timings inside) are checked as part of their
  own stage but are not what a later stage is built from, so a deterministic rebuild of an
  input (same SIDs, same weights, other timings) does not orphan the stages built on it.
- **One writer.** :func:`lock` takes an exclusive ``flock`` on ``RUN/.lock`` (holder's pid
  inside). The kernel drops it when the holder dies, so a stale lock of a dead process
  is simply taken over; acquiring it also clears temporaries a killed writer left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sidrec.errors import SidrecError
from sidrec.io import read_json, sha256_file, write_json

RECORD = "stage.json"
LOCK = ".lock"
#: stage directory -> the command that writes it (named in "re-run ..." hints).
COMMANDS = {"data": "prepare", "embeddings": "embed", "tokenizer": "tokenize", "model": "train", "eval": "evaluate"}
#: files that report on a stage (timings inside) rather than feed the stages built from it
REPORTS = frozenset({"sid_metrics.json", "codebook_usage.png"})
_TEMP = re.compile(r"^\.(?P<stage>[^/]+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")  # commit_stage's siblings
_TEMP_FILE = re.compile(r"^\..+\.tmp$")  # io.atomic_path's temporaries

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: no advisory locks; documented)
    fcntl = None  # type: ignore[assignment]

_HELD: dict[Path, list[int]] = {}  # resolved run dir -> [fd, depth]: the lock is re-entrant per process


def ensure_dir(root: str | Path, what: str = "run directory") -> Path:
    """``root`` as a directory (created if missing); a path that is a file is a one-line error."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SidrecError(f"{what} {root} is a file, not a directory; choose another path with -w")
    for parent in root.parents:
        if parent.exists() and not parent.is_dir():
            raise SidrecError(f"{what} {root}: {parent} is a file, not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def lock(root: str | Path) -> Iterator[Path]:
    """Hold the run directory's writer lock; a second writer fails at once naming the holder's pid.

    Re-entrant within one process (``sidrec run`` holds it while each stage takes it again).
    """
    root = ensure_dir(root)
    key = root.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield root
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SidrecError(f"run directory {root} is in use by another sidrec process (pid {holder}); "
                              "wait for it to finish or stop it") from None  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1]
    try:
        clean_temporaries(root)
        yield root
    finally:
        del _HELD[key]
        os.close(fd)  # releases the flock


def clean_temporaries(root: Path) -> list[str]:
    """Remove what killed writers left (lock held): temp stage dirs, temp files; roll back a half swap.

    A commit killed between its two renames leaves ``.STAGE.old-PID`` and no ``STAGE``:
    the old stage is renamed back, so the directory is as before that commit.
    """
    done = []
    for p in sorted(root.iterdir()):
        m = _TEMP.match(p.name)
        if m and m["kind"] == "old" and not (root / m["stage"]).exists():
            os.replace(p, root / m["stage"])
            done.append(f"restored {m['stage']}")
        elif m:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p.name}")
    for d in [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "eval")]:
        for f in d.iterdir():
            if _TEMP_FILE.match(f.name) and f.is_file():
                f.unlink(missing_ok=True)
                done.append(f"removed {d.name}/{f.name}")
    return done


# ------------------------------------------------------------------ records


def file_checksums(stage_dir: Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """sha256 of the named files (default: every file under ``stage_dir`` except the record), by relative path."""
    if names is None:
        names = sorted(str(p.relative_to(stage_dir)) for p in stage_dir.rglob("*") if p.is_file() and p.name != RECORD)
    return {n: sha256_file(stage_dir / n) for n in names}


def record_stage(stage_dir: str | Path, files: Iterable[str] | None = None, inputs: Iterable[str] = ()) -> dict[str, Any]:
    """Write ``stage_dir/stage.json``: checksums of ``files`` (default all) and of the sibling stages ``inputs``.

    Used directly by stages that write incrementally (``model``); :func:`commit_stage`
    calls it for the others. The record is written last, atomically, so a writer killed
    before it leaves files that no longer match the previous record (refused on read).
    """
    stage_dir = Path(stage_dir)
    record = {
        "stage": stage_dir.name,
        "files": file_checksums(stage_dir, files),
        "inputs": {name: stage_files(stage_dir.parent / name) for name in inputs},
    }
    write_json(stage_dir / RECORD, record)
    return record


def read_record(stage_dir: Path) -> dict[str, Any]:
    """The stage record; missing means the stage was never (completely) written by this sidrec."""
    stage = stage_dir.name
    hint = f"run `sidrec {COMMANDS.get(stage, stage)}`"
    if not stage_dir.is_dir():
        raise SidrecError(f"{stage} stage not found: {stage_dir} ({hint} first)")
    if not (stage_dir / RECORD).is_file():
        raise SidrecError(f"{stage_dir} has no stage record ({RECORD}): it is incomplete or was written by an older sidrec; {hint}")
    rec = read_json(stage_dir / RECORD, "stage record")
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict) or not isinstance(rec.get("inputs"), dict):
        raise SidrecError(f"{stage_dir / RECORD}: damaged stage record; {hint}")
    return rec


def stage_files(stage_dir: str | Path) -> dict[str, str]:
    """The verified file checksums of a stage: every recorded file exists with its recorded sha256."""
    stage_dir = Path(stage_dir)
    rec = read_record(stage_dir)
    hint = f"re-run `sidrec {COMMANDS.get(stage_dir.name, stage_dir.name)}`"
    for name, sha in rec["files"].items():
        path = stage_dir / name
        if not path.is_file():
            raise SidrecError(f"{path} is missing (its stage record lists it); {hint}")
        if sha256_file(path) != sha:
            raise SidrecError(f"{path} does not match its stage record (damaged, or changed after the stage wrote it); {hint}")
    return dict(rec["files"])


def check_stage(stage_dir: str | Path) -> dict[str, str]:
    """Verify a stage and, recursively, that every input still holds what it was built from.

    Returns:
        The stage's verified file checksums.

    Raises:
        SidrecError: e.g. ``model/ was built from another tokenizer/ (sids.csv changed since); re-run `sidrec train```.
    """
    stage_dir = Path(stage_dir)
    files = stage_files(stage_dir)
    for name, was in read_record(stage_dir)["inputs"].items():
        up = stage_dir.parent / name
        now, was = without_reports(check_stage(up)), without_reports(was)
        if now != was:
            changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            raise SidrecError(
                f"{stage_dir.name}/ in {stage_dir.parent} was built from another {name}/ "
                f"({', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''} changed since); "
                f"re-run `sidrec {COMMANDS.get(stage_dir.name, stage_dir.name)}`"
            )
    return files


def without_reports(files: dict[str, str]) -> dict[str, str]:
    """A stage's file checksums minus its :data:`REPORTS`: what later stages depend on."""
    return {k: v for k, v in files.items() if k not in REPORTS}


# ------------------------------------------------------------------ commits


@contextlib.contextmanager
def commit_stage(final: str | Path, inputs: Iterable[str] = (), keep: bool = False) -> Iterator[Path]:
    """Write a whole stage into a temporary sibling, then swap it in for ``final``.

    Args:
        final: the stage directory (``RUN/tokenizer``).
        inputs: sibling stages it was built from; their checksums go into its record.
        keep: start from a copy of ``final``'s current files (a stage updated in place).

    Yields:
        The temporary directory to write into. On an exception it is removed and
        ``final`` is untouched.
    """
    final = Path(final)
    inputs = tuple(inputs)
    with lock(final.parent) as root:
        tmp = root / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if keep and final.is_dir():
            shutil.copytree(final, tmp, ignore=shutil.ignore_patterns(RECORD))
        tmp.mkdir(exist_ok=True)
        try:
            yield tmp
            rec = record_stage(tmp, inputs=inputs)  # tmp is final's sibling: the same input stages
            write_json(tmp / RECORD, {**rec, "stage": final.name})
            _fsync_tree(tmp)
            _swap(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap(tmp: Path, final: Path) -> None:
    """``final`` := ``tmp``. POSIX cannot rename over a non-empty directory: the old one goes aside first."""
    if final.exists() and not final.is_dir():
        raise SidrecError(f"{final} is a file, not a stage directory; remove it")
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)  # killed between the renames: the next lock holder renames `old` back
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(final.parent)


def _fsync_tree(d: Path) -> None:
    for p in d.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(d)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------ the model stage


#: What a training run leaves in ``model/`` (every recipe); a fresh run must not mix with them.
MODEL_RESULTS = ("last.safetensors", "last.pt", "best.safetensors", "best.json", "checkpoint.safetensors",
                 "model.safetensors", "train_summary.json", "train_result.json", "metrics.csv", RECORD)  # fmt: skip


def previous_results(model_dir: Path) -> list[str]:
    """Names of a previous run's results in ``model_dir``."""
    return [n for n in MODEL_RESULTS if (model_dir / n).is_file()]


#: Checkpoints a run resumes from (the loop's ``last.safetensors``, SASRec's ``checkpoint.safetensors``),
#: the legacy pickled one (refused with an explanation by the loop), and the files of a finished run.
RESUMABLE = ("last.safetensors", "checkpoint.safetensors")
CHECKPOINTS = (*RESUMABLE, "last.pt")
FINISHED = ("train_summary.json", "train_result.json")


def interrupted_before_checkpoint(model_dir: Path) -> bool:
    """Results of a training run killed before its first checkpoint: nothing to resume, and no finished run to protect.

    Best weights and ``metrics.csv`` are written at an evaluation just before that evaluation's checkpoint,
    so a kill in between leaves results that ``--resume`` cannot continue and that a fresh start would refuse.
    """
    found = set(previous_results(model_dir))
    return bool(found) and not found & {*CHECKPOINTS, *FINISHED}


def check_fresh_start(model_dir: Path, resume: bool, overwrite: bool) -> None:
    """A fresh ``train`` into a directory holding a previous run's results needs ``--overwrite``."""
    found = previous_results(model_dir)
    if found and not resume and not overwrite:
        raise SidrecError(f"{model_dir} holds a previous training run ({', '.join(found[:3])}); "
                          "pass --resume to continue it or --overwrite to replace it")  # fmt: skip


def retire_results(model_dir: Path) -> None:
    """Delete a previous run's results; called once the new run is validated and about to take its first step."""
    for n in MODEL_RESULTS:
        (model_dir / n).unlink(missing_ok=True)
    for d in ("tensorboard", "best_sids"):  # event files and a SID table of the old run
        shutil.rmtree(model_dir / d, ignore_errors=True)


def adopt(root: str | Path) -> list[str]:
    """Record the stages of a run directory written by an older sidrec, trusting their files as they are.

    ``python -m sidrec.rundir adopt RUN``: for runs made before stage records existed.
    """
    out = []
    with lock(root) as root:
        chain = {"data": (), "embeddings": ("data",), "tokenizer": ("embeddings",), "model": ("data", "tokenizer")}
        for stage, inputs in chain.items():
            d = root / stage
            if d.is_dir() and not (d / RECORD).is_file():
                files = ("best.safetensors", "best.json") if stage == "model" and (d / "best.json").is_file() else None
                if stage == "model" and files is None:
                    files = tuple(n for n in ("model.safetensors", "config.json") if (d / n).is_file())
                    inputs = ("data",)
                record_stage(d, files, tuple(i for i in inputs if (root / i / RECORD).is_file()))
                out.append(stage)
    return out


if __name__ == "__main__":  # python -m sidrec.rundir adopt RUN
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "adopt":
        sys.exit("usage: python -m sidrec.rundir adopt RUN_DIR")
    print(json.dumps({"recorded": adopt(sys.argv[2])}))
