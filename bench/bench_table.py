#!/usr/bin/env python3
"""Joins the JSON lines of via_model_bench and reference_model_bench.py into a table.

usage: bench_table.py VIA.jsonl REFERENCE.jsonl
"""
import json
import sys


def read(path):
    rows, info = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "info" in r:
                text = f"{r['impl']}: {r['info']}"
                if text not in info:
                    info.append(text)
                continue
            rows[(r["model"], r["what"], r["size"], r["threads"])] = r
    return rows, info


def main():
    ours, info_a = read(sys.argv[1])
    ref, info_b = read(sys.argv[2])
    for line in info_a + info_b:
        print(line)
    print("seconds: the best of `reps` calls (least disturbed by other load); ratio of medians beside it")
    header = (f"{'model':5} {'what':10} {'size':>5} {'thr':>3} {'via s':>9} {'ref s':>9} {'via/ref':>8} "
              f"{'(median)':>8} {'reps':>4}")
    print(header)
    print("-" * len(header))
    for key in sorted(set(ours) | set(ref), key=lambda k: (k[0] != "tiny", k[1], k[2], k[3])):
        a, b = ours.get(key), ref.get(key)
        sa = f"{a['seconds']:9.4f}" if a else f"{'-':>9}"
        sb = f"{b['seconds']:9.4f}" if b else f"{'-':>9}"
        both = a and b and b["seconds"] > 0 and b["median"] > 0
        ratio = f"{a['seconds'] / b['seconds']:8.2f}" if both else f"{'-':>8}"
        ratio_median = f"{a['median'] / b['median']:8.2f}" if both else f"{'-':>8}"
        reps = (a or b)["reps"]
        print(f"{key[0]:5} {key[1]:10} {key[2]:5d} {key[3]:3d} {sa} {sb} {ratio} {ratio_median} {reps:4d}")


if __name__ == "__main__":
    main()
