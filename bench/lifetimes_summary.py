"""Times lifetimes 0.11.3's summary_data_from_transaction_data (frequency, recency, T and
monetary value per customer) on an orders CSV and prints JSON with the seconds, for
`winback bench features`. Reading the CSV is not timed, as winback's in-memory figure does not
time it either."""
import json
import sys
import time

import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data

orders = pd.read_csv(sys.argv[1], usecols=["customer_id", "ordered_at", "total"])
orders["ordered_at"] = pd.to_datetime(orders["ordered_at"], utc=True).dt.tz_localize(None)
end = orders["ordered_at"].max()
start = time.perf_counter()
summary = summary_data_from_transaction_data(
    orders, "customer_id", "ordered_at", monetary_value_col="total", observation_period_end=end, freq="D"
)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "customers": len(summary)}))
