#!/usr/bin/env python3
"""bench/ncu_sum.py CSV [FORWARDS] — sums an Nsight Compute CSV (--csv --page raw with the
metric gpu__time_duration.sum, as bench/gpu_check.sh kernels writes it) by kernel name:
GPU time per forward (the total divided by FORWARDS, default 1), calls, mean, share. Prints
the kernel total per forward first. Exit 1 when the file holds no kernel rows."""
import csv
import sys


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: bench/ncu_sum.py CSV [FORWARDS]")
    path = sys.argv[1]
    fw = int(sys.argv[2]) if len(sys.argv) == 3 else 1
    rows = []
    with open(path, newline="") as f:
        lines = [ln for ln in f if ln.startswith('"')]   # ncu's own log lines start with ==
    r = csv.reader(lines)
    head = next(r, None)
    if not head or "Kernel Name" not in head:
        sys.exit(f"{path}: no ncu CSV header")
    ki, ti = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
    gi = head.index("launch__grid_size") if "launch__grid_size" in head else None
    unit = None
    for row in r:
        if len(row) <= max(ki, ti):
            continue
        try:
            t = float(row[ti].replace(",", ""))
        except ValueError:
            unit = row[ti]          # the units row
            continue
        rows.append((row[ki], t, row[gi] if gi is not None else ""))
    if not rows:
        sys.exit(f"{path}: no kernel rows")
    scale = {"ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit, 1e-3)
    by = {}
    for name, t, _ in rows:
        short = name.split("(")[0][:100]
        s = by.setdefault(short, [0.0, 0])
        s[0] += t * scale
        s[1] += 1
    total = sum(v[0] for v in by.values())
    print(f"{len(rows) // fw} kernels, {total / fw / 1e3:.2f} ms of GPU time per forward")
    for name, (t, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"{t / fw:9.1f} us {n // fw:5d} x {t / n:7.1f} us {100 * t / total:5.1f}%  {name}")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:   # the reader (head) has what it wanted
        sys.stderr.close()
