"""Reference values of ln 2F1(a, b; c; z) and its derivatives, computed with mpmath at 40 digits.

Regenerate with `python3 hyp2f1_reference.py > hyp2f1_reference.csv` (needs `pip install mpmath`).
The cases are drawn from a fixed seed: general arguments, and the shapes Pareto/NBD and BG/NBD
produce, with z from 0 to 1 - 1e-6.
"""

import random

import mpmath as mp

mp.mp.dps = 40
rng = random.Random(20261123)
ZS = [0.0, 0.1, 0.5, 0.8, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999]


def log_uniform(lo, hi):
    return float(mp.e ** mp.mpf(rng.uniform(float(mp.log(lo)), float(mp.log(hi)))))


cases = []
for z in ZS:
    for _ in range(10):
        cases.append(("general", log_uniform(0.05, 50), log_uniform(0.05, 50), log_uniform(0.05, 50), z))
    for _ in range(12):
        # Pareto/NBD: 2F1(r+s+x, r+x or s+1; r+s+x+1; z).
        r, s, x = log_uniform(0.05, 5), log_uniform(0.05, 5), rng.choice([0, 1, 2, 5, 20, 100, 300])
        b = r + x if rng.random() < 0.5 else s + 1
        cases.append(("pareto", r + s + x, b, r + s + x + 1, z))
for _ in range(40):
    # BG/NBD's conditional expectation: 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t)), with c > 0.
    r, a, b, x = log_uniform(0.05, 5), log_uniform(1.01, 5), log_uniform(0.05, 5), rng.choice([0, 1, 3, 10, 50])
    t, big_t, alpha = log_uniform(1, 100), log_uniform(1, 100), log_uniform(0.5, 50)
    cases.append(("bgnbd", r + x, b + x, a + b + x - 1, t / (alpha + big_t + t)))

print("shape,a,b,c,z,ln_value,d_a,d_b,d_c")
for shape, a, b, c, z in cases:
    a, b, c, z = (float(v) for v in (a, b, c, z))
    f = lambda a, b, c: mp.log(mp.hyp2f1(a, b, c, z))
    value = f(a, b, c)
    d_a = mp.diff(lambda v: f(v, b, c), a)
    d_b = mp.diff(lambda v: f(a, v, c), b)
    d_c = mp.diff(lambda v: f(a, b, v), c)
    row = [shape] + [repr(v) for v in (a, b, c, z)] + [mp.nstr(v, 25) for v in (value, d_a, d_b, d_c)]
    print(",".join(row))
