"""Fits lifetimes 0.11.3's BetaGeoFitter on a CSV of frequency,recency,T and prints JSON:
the parameters, log-likelihood and the seconds the fit took. Used by `winback bench bgnbd`
to measure winback against its Python peer on the same data, in the same run."""
import json
import sys
import time

import pandas as pd
from lifetimes import BetaGeoFitter

data = pd.read_csv(sys.argv[1])
model = BetaGeoFitter(penalizer_coef=0.0)
start = time.perf_counter()
model.fit(data["frequency"], data["recency"], data["T"])
seconds = time.perf_counter() - start
p = model.params_
print(json.dumps({
    "r": float(p["r"]), "alpha": float(p["alpha"]), "a": float(p["a"]), "b": float(p["b"]),
    "log_likelihood": float(-model._negative_log_likelihood_ * len(data)) if hasattr(model, "_negative_log_likelihood_") else None,
    "seconds": seconds,
}))
