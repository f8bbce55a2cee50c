"""Reference fits and predictions of lifetimes 0.11.3 on the CDNOW sample, for the tests.

Run: python3 lifetimes_cdnow.py ../../../../data/cdnow/CDNOW_sample.txt
Calibration ends 1997-09-30; time in weeks; repeat purchases counted per distinct day.
"""

import sys

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data

rows = pd.read_csv(sys.argv[1], sep=r"\s+", header=None, names=["id", "cust", "date", "qty", "dollars"])
rows["date"] = pd.to_datetime(rows["date"].astype(str), format="%Y%m%d")
cal = rows[rows["date"] <= "1997-09-30"]
s = summary_data_from_transaction_data(cal, "cust", "date", freq="D", observation_period_end="1997-09-30")
s["recency"] /= 7.0
s["T"] /= 7.0
cases = [(2, 30.43, 38.86), (0, 0.0, 38.86), (10, 35.0, 38.0), (1, 5.0, 38.0), (30, 38.5, 38.86)]
for name, model in [("MBG/NBD", ModifiedBetaGeoFitter()), ("Pareto/NBD", ParetoNBDFitter())]:
    model.fit(s["frequency"], s["recency"], s["T"])
    p = model.params_
    print(name, {k: repr(v) for k, v in p.items()})
    for x, t_x, t in cases:
        alive = model.conditional_probability_alive(x, t_x, t)
        exp39 = model.conditional_expected_number_of_purchases_up_to_time(39.0, x, t_x, t)
        print(f"  x={x} t_x={t_x} T={t}: p_alive {np.asarray(alive).item()!r} expected_39 {np.asarray(exp39).item()!r}")
    print("  new customer, 39 weeks:", repr(np.asarray(model.expected_number_of_purchases_up_to_time(39.0)).item()))
