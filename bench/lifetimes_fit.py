"""Fits a lifetimes 0.11.3 model on a CSV of frequency,recency,T,monetary and prints JSON: the
parameters and the seconds the fit took; then, with the parameters set to winback's (so both
compute the same quantities), the seconds and totals of P(alive), expected purchases in the
horizon and 12-month CLV for every customer. Used by `winback bench fit` to measure winback
against its Python peer on the same data, in the same run.

Usage: lifetimes_fit.py MODEL CSV PARAMS_JSON GAMMA_GAMMA_JSON HORIZON_WEEKS
MODEL is bgnbd, mbgnbd or pareto_nbd."""
import json
import sys
import time

import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

kind, path, ours, gg_params, horizon = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), float(sys.argv[5])
fitters = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter, "pareto_nbd": ParetoNBDFitter}
data = pd.read_csv(path)
model = fitters[kind](penalizer_coef=0.0)
start = time.perf_counter()
model.fit(data["frequency"], data["recency"], data["T"])
fit_seconds = time.perf_counter() - start
fitted = {k: float(v) for k, v in model.params_.items()}

# Predictions at winback's parameters, so the totals compare like for like.
model.params_ = pd.Series(ours)
ggf = GammaGammaFitter(penalizer_coef=0.0)
ggf.params_ = pd.Series(gg_params)
f, r, t, m = data["frequency"], data["recency"], data["T"], data["monetary"]
start = time.perf_counter()
alive = model.conditional_probability_alive(f, r, t)
expected = model.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t)
clv = ggf.customer_lifetime_value(model, f, r, t, m, time=12, discount_rate=0.01, freq="W")
predict_seconds = time.perf_counter() - start
print(json.dumps({
    "params": fitted,
    "fit_seconds": fit_seconds,
    "predict_seconds": predict_seconds,
    "p_alive_sum": float(alive.sum()),
    "expected_sum": float(expected.sum()),
    "clv_sum": float(clv.sum()),
}))
