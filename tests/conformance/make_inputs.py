#!/usr/bin/env python3
"""Writes the inputs of the conformance cases (tests/conformance/cases/*/input.csv and args).
Hand-written cases target one rule each; random ones use fixed seeds. Rerun, then
generate.sh, to rebuild the fixtures."""
import os
import random

here = os.path.dirname(os.path.abspath(__file__))


def case(name, args, rows, second=None):
    """args: SPEC OUT_OF_ORDERNESS_MS ALLOWED_LATENESS_MS EVERY_EVENT [NAME=VALUE...];
    `second` rows become input2.csv, a further input with its own watermarks."""
    d = os.path.join(here, "cases", name)
    os.makedirs(d, exist_ok=True)
    if second is not None:
        args += " input=input2.csv"
    with open(os.path.join(d, "args"), "w") as f:
        f.write(args + "\n")
    for file, data in (("input.csv", rows), ("input2.csv", second)):
        if data is None:
            continue
        with open(os.path.join(d, file), "w") as f:
            for k, ts, v in data:
                f.write(f"{k},{ts},{v}\n")


# Out of order within and beyond the bound; the beyond ones are late.
case("tumble_out_of_order", "tumble:5000 1000 0 1", [
    ("a", 1000, 1), ("b", 1500, 2), ("a", 4000, 3), ("a", 3500, 4.5), ("b", 6000, 5),
    ("a", 5200, 6), ("a", 4999, 7), ("b", 7000, 8), ("a", 2000, 9),  # 2000: wm 5999, window [0,5000) gone
    ("c", 12000, 10), ("a", 9000, 11), ("b", 10500, 12), ("c", 11000, 13), ("a", 15000, 14),
])

# Allowed lateness: late elements within it fire the window again; beyond it go to the side output.
case("tumble_allowed_lateness", "tumble:1000 0 2000 1", [
    ("k", 100, 1), ("k", 900, 2), ("k", 1500, 3),  # wm 1499: [0,1000) fires
    ("k", 500, 4),   # late but within lateness: late firing of [0,1000)
    ("k", 2500, 5),  # wm 2499
    ("k", 700, 6),   # another late firing
    ("k", 3100, 7),  # wm 3099 >= 999 + 2000: [0,1000) cleaned up
    ("k", 200, 8),   # too late: side output
    ("k", 1200, 9),  # [1000,2000) still alive (1999 + 2000 > 3099): late firing
    ("k", 9000, 10), ("k", 1800, 11),  # wm 8999: [1000,2000) gone, 1800 to side output
])

case("negative_timestamps", "tumble:1000 100 0 1", [
    ("n", -5000, 1), ("n", -4001, 2), ("n", -3999, 3), ("n", -1, 4), ("n", 0, 5),
    ("m", -2500, 6), ("m", -2600, 7), ("n", -1001, 8), ("m", 999, 9), ("n", 1500, 10),
])

case("tumble_offset", "tumble:1000:-250 0 0 1", [
    ("o", -300, 1), ("o", -250, 2), ("o", 0, 3), ("o", 749, 4), ("o", 750, 5), ("o", 1749, 6), ("o", 1750, 7),
])

case("hop_slide_not_dividing", "hop:10000:3000 500 0 1", [
    ("h", 0, 1), ("h", 2999, 2), ("h", 3000, 3), ("g", 7000, 4), ("h", 9999, 5), ("h", 10000, 6),
    ("g", 14000, 7), ("h", -1, 8), ("h", 21000, 9), ("g", 33000, 10),
])

case("hop_offset", "hop:5000:2000:500 0 1000 1", [
    ("x", 0, 1), ("x", 499, 2), ("x", 500, 3), ("x", 2600, 4), ("x", 4400, 5), ("x", 7000, 6),
    ("x", 3000, 7), ("x", 12000, 8), ("x", 1000, 9),
])

# Touching sessions merge: [0,10) and [10,20) touch.
case("session_touching", "session:10 0 0 1", [
    ("s", 0, 1), ("s", 10, 2), ("s", 25, 3), ("t", 5, 4), ("t", 16, 5), ("s", 35, 6), ("t", 26, 7),
    ("s", 100, 8), ("t", 100, 9),
])

# A late element bridges two sessions that already fired (allowed lateness keeps them).
case("session_late_merge", "session:20 0 200 1", [
    ("a", 0, 1), ("a", 30, 2), ("b", 100, 3),  # wm 99: [0,20) and [30,50) fire
    ("a", 15, 4),  # late, [15,35) bridges both: merged [0,50) fires again
    ("b", 400, 5),  # wm 399: everything cleaned up
    ("a", 20, 6),  # too late: side output
])

case("count", "count:3 0 0 1", [(k, i * 10, i) for i, k in enumerate("aababbabaaab")])
case("count_sliding", "count:4:2 0 0 1", [(k, i * 10, i) for i, k in enumerate("aaaaabbbabababab")])


def random_rows(seed, n, keys, spread, jitter):
    rng = random.Random(seed)
    rows, t = [], 0
    for _ in range(n):
        t += rng.randint(0, spread)
        rows.append((f"k{rng.randrange(keys)}", t - rng.randint(0, jitter), round(rng.uniform(-100, 100), 2)))
    return rows


case("random_tumble", "tumble:1000 300 500 1", random_rows(1, 3000, 17, 20, 2500))
case("random_hop", "hop:3000:700:100 500 0 1", random_rows(2, 2000, 9, 30, 1500))
case("random_session", "session:400 200 300 1", random_rows(3, 2000, 13, 60, 1200))
case("random_count", "count:5:3 0 0 1", random_rows(4, 1000, 7, 10, 0))


# Two inputs, each with its own watermarks, unioned (random_rows with a jitter no
# larger than the out-of-orderness, so no row is late for its own input): the first runs far ahead in
# event time, the second lags. The window operator must hold back to the minimum,
# so no row of the lagging input is late (none is late for its own input, and the
# result is then the same for every interleaving of the two inputs).
case("two_inputs_progress", "tumble:1000 200 0 1",
     random_rows(5, 1500, 6, 40, 200), random_rows(6, 1500, 6, 8, 200))
case("two_inputs_session", "session:150 100 300 1",
     random_rows(7, 1000, 5, 60, 100), random_rows(8, 1000, 5, 15, 100))

# Continuous event-time triggers fire every interval of event time, then at the end.
case("tumble_continuous", "tumble:10000 300 2000 1 trigger=continuous:2500", random_rows(9, 1500, 5, 40, 2500))
case("session_continuous", "session:500 100 0 1 trigger=continuous:300", random_rows(10, 800, 4, 120, 300))

# Evictors: keep the last N elements, or those within MS of the newest timestamp.
case("tumble_evict_count", "tumble:5000 500 1000 1 evictor=count:3", random_rows(11, 1200, 6, 30, 1200))
case("hop_evict_time", "hop:4000:1000 200 0 1 evictor=time:1500", random_rows(12, 1200, 6, 25, 400))
case("session_evict_count", "session:300 100 0 1 evictor=count:2", random_rows(13, 600, 4, 100, 150))
