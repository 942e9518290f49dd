"""Policy records: load + index time and look-up time, as ratios against a plain CSV read.

    .venv/bin/python bench/policy_index.py [--rounds N]

Reads `../shared/eval/policies_dev.csv` (or `$GATEWAY_SHARED_DIR/eval/...`). The baseline, measured in
the same run, is `csv.DictReader` over the same file with nothing done per row, so the ratio says how much
the record parsing, validation and indexing cost on top of reading the file, whatever the machine's speed
today. Look-ups: every dev caller's ID number, exact and with the last digit misheard (confirmed by name).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from speech.dialogue.records import RecordIndex, load_policies_csv  # noqa: E402

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")) / "eval"


def _best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    path = SHARED / "policies_dev.csv"

    def plain_read() -> None:
        with path.open(encoding="utf-8", newline="") as f:
            for _ in csv.DictReader(f):
                pass

    holder: dict[str, RecordIndex] = {}

    def load_and_index() -> None:
        holder["index"] = RecordIndex(load_policies_csv(path))

    callers = [json.loads(line) for line in (SHARED / "claim_dev.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]

    def lookups() -> None:
        index = holder["index"]
        for caller in callers:
            gold = caller["gold"]
            index.find(gold["insured_id_number"], None, None)
            wrong = gold["insured_id_number"][:-1] + ("0" if gold["insured_id_number"][-1] != "0" else "1")
            index.find(wrong, None, gold["insured_name"])

    base = _best(plain_read, args.rounds)
    load = _best(load_and_index, args.rounds)
    look = _best(lookups, args.rounds)
    n = len(holder["index"])
    per_lookup = look / (2 * len(callers))
    print(f"records {n}: plain csv read {base * 1e3:.1f} ms (baseline)")
    print(f"load + index {load * 1e3:.1f} ms = {load / base:.1f}x baseline")
    print(f"look-ups {2 * len(callers)}: {per_lookup * 1e6:.0f} us each = {per_lookup / (base / n):.1f}x reading one row")
    print(json.dumps({"records": n, "baseline_s": base, "load_index_s": load, "load_ratio": load / base,
                      "lookup_s": per_lookup, "rounds": args.rounds}))


if __name__ == "__main__":
    main()
