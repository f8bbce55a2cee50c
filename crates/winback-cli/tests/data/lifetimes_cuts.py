"""Reference BG/NBD fits of lifetimes 0.11.3 on the CDNOW master at several calibration cuts,
for the calendar-day test (`cdnow_master_cuts` in tests/it/main.rs).

Run: python3 lifetimes_cuts.py ../../../../data/cdnow/CDNOW_master.txt > lifetimes_cuts.txt
Calibration ends on each cut (its purchases count); time in weeks; repeat purchases counted per
distinct day, as winback counts them.
"""

import sys

import pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

rows = pd.read_csv(sys.argv[1], sep=r"\s+", skiprows=1, header=None, names=["cust", "date", "qty", "dollars"])
rows["date"] = pd.to_datetime(rows["date"].astype(str), format="%Y%m%d")
for cut in ["1997-06-30", "1997-09-30", "1997-12-31"]:
    cal = rows[rows["date"] <= cut]
    s = summary_data_from_transaction_data(cal, "cust", "date", freq="D", observation_period_end=cut)
    s["recency"] /= 7.0
    s["T"] /= 7.0
    model = BetaGeoFitter()
    model.fit(s["frequency"], s["recency"], s["T"])
    p = model.params_
    print(cut, *(repr(float(p[k])) for k in ("r", "alpha", "a", "b")))
