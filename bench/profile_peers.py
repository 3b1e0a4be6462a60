"""The same profile characteristics computed by DuckDB SQL and by Polars, for the profile
benchmark (bench/profile_peers.sh). Usage:

    python3 bench/profile_peers.py duckdb|polars LEDGER AS_OF OUT.parquet
    python3 bench/profile_peers.py compare YUANXIN.parquet DUCKDB.parquet POLARS.parquet

Definitions follow docs/features.md exactly (business days in Asia/Shanghai, windows ending
on the as-of date, amounts summed in fen).
"""
import datetime as dt
import json
import math
import pathlib
import sys
import time

FEATURES = [
    "rev_total_30d", "rev_total_90d", "rev_total_365d", "rev_cv_6m", "days_since_last_sale",
    "active_days_ratio_30d", "withdrawals_30d", "complaints_90d", "prepaid_sales_30d",
    "prepaid_liability", "escrow_coverage", "payroll_on_time_ratio_6m",
]


def files(ledger, table):
    m = json.loads((pathlib.Path(ledger) / "manifest.json").read_text())
    return [str(pathlib.Path(ledger) / f["path"]) for f in m["files"] if f["table"] == table]


def day_number(as_of):
    return (dt.date.fromisoformat(as_of) - dt.date(1970, 1, 1)).days


def run_duckdb(ledger, as_of, out):
    import duckdb
    d = day_number(as_of)
    con = duckdb.connect()
    lst = lambda t: "[" + ",".join(f"'{p}'" for p in files(ledger, t)) + "]"
    day = "((epoch_ms(ts) + 28800000) // 86400000)"
    sql = f"""
    WITH
    m AS (SELECT DISTINCT merchant_id FROM read_parquet({lst('merchants')}) WHERE registered_on <= DATE '{as_of}'),
    spot AS (SELECT merchant_id, {day} AS day, CAST(amount * 100 AS BIGINT) AS fen
             FROM read_parquet({lst('wallet_flows')}) WHERE kind = 'SPOT_SALE' AND {day} <= {d}),
    wd AS (SELECT merchant_id, {day} AS day FROM read_parquet({lst('wallet_flows')})
           WHERE kind = 'WITHDRAWAL' AND {day} <= {d}),
    esc AS (SELECT merchant_id, {day} AS day, kind, code, CAST(amount * 100 AS BIGINT) AS fen,
                   CAST(coalesce(frozen_amount, 0) * 100 AS BIGINT) AS frozen
            FROM read_parquet({lst('escrow_events')}) WHERE {day} <= {d}),
    ops AS (SELECT merchant_id, {day} AS day, kind, on_time FROM read_parquet({lst('operations')}) WHERE {day} <= {d}),
    cmp AS (SELECT merchant_id, {day} AS day FROM read_parquet({lst('complaints')}) WHERE {day} <= {d}),
    rev AS (SELECT merchant_id, ({d} - day) // 30 AS k, sum(fen) AS fen FROM (
              SELECT merchant_id, day, fen FROM spot
              UNION ALL SELECT merchant_id, day, fen FROM esc WHERE kind = 'RELEASE')
            WHERE {d} - day < 360 GROUP BY ALL),
    first AS (SELECT merchant_id, min(day) AS first FROM (
              SELECT merchant_id, day FROM spot UNION ALL SELECT merchant_id, day FROM esc
              UNION ALL SELECT merchant_id, day FROM ops) GROUP BY ALL),
    six AS (SELECT m.merchant_id, coalesce(rev.fen, 0) / 100.0 AS y
            FROM m CROSS JOIN range(6) r(k) LEFT JOIN rev ON rev.merchant_id = m.merchant_id AND rev.k = r.k),
    cv AS (SELECT merchant_id, stddev_pop(y) / avg(y) AS cv, avg(y) AS mean FROM six GROUP BY ALL),
    s AS (SELECT merchant_id, max(day) AS last_sale,
                 count(DISTINCT day) FILTER (WHERE day > {d} - 30) AS active FROM spot GROUP BY ALL),
    e AS (SELECT merchant_id,
            sum(CASE WHEN kind = 'PREPAYMENT' THEN fen WHEN kind IN ('REDEMPTION', 'REFUND_COMPLETED') THEN -fen
                     WHEN kind = 'EXPIRY' AND code = 'RELEASE_TO_MERCHANT' THEN -fen ELSE 0 END) AS liability,
            sum(CASE WHEN kind = 'PREPAYMENT' THEN frozen WHEN kind = 'RELEASE' THEN -fen
                     WHEN kind = 'REFUND_COMPLETED' AND code = 'ESCROW' THEN -fen ELSE 0 END) AS frozen,
            sum(fen) FILTER (WHERE kind = 'PREPAYMENT' AND day > {d} - 30) AS prepaid30
          FROM esc GROUP BY ALL)
    SELECT m.merchant_id,
      coalesce((SELECT sum(fen) FROM rev WHERE rev.merchant_id = m.merchant_id AND k < 1), 0) / 100.0 AS rev_total_30d,
      coalesce((SELECT sum(fen) FROM rev WHERE rev.merchant_id = m.merchant_id AND k < 3), 0) / 100.0 AS rev_total_90d,
      coalesce((SELECT sum(fen) FROM rev WHERE rev.merchant_id = m.merchant_id AND k < 12), 0) / 100.0 AS rev_total_365d,
      CASE WHEN {d} - first.first + 1 >= 180 AND cv.mean > 0 THEN cv.cv END AS rev_cv_6m,
      ({d} - s.last_sale)::DOUBLE AS days_since_last_sale,
      coalesce(s.active, 0) / 30.0 AS active_days_ratio_30d,
      (SELECT count(*) FROM wd WHERE wd.merchant_id = m.merchant_id AND day > {d} - 30)::DOUBLE AS withdrawals_30d,
      (SELECT count(*) FROM cmp WHERE cmp.merchant_id = m.merchant_id AND day > {d} - 90)::DOUBLE AS complaints_90d,
      coalesce(e.prepaid30, 0) / 100.0 AS prepaid_sales_30d,
      coalesce(e.liability, 0) / 100.0 AS prepaid_liability,
      CASE WHEN e.liability > 0 THEN e.frozen::DOUBLE / e.liability::DOUBLE END AS escrow_coverage,
      (SELECT avg(on_time::INT) FROM ops WHERE ops.merchant_id = m.merchant_id AND kind = 'PAYROLL'
         AND on_time IS NOT NULL AND day > {d} - 180) AS payroll_on_time_ratio_6m
    FROM m LEFT JOIN first USING (merchant_id) LEFT JOIN cv USING (merchant_id)
      LEFT JOIN s USING (merchant_id) LEFT JOIN e USING (merchant_id)
    """
    t0 = time.perf_counter()
    con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
    return time.perf_counter() - t0


def run_polars(ledger, as_of, out):
    import polars as pl
    d = day_number(as_of)
    t0 = time.perf_counter()
    day = ((pl.col("ts").dt.epoch("ms") + 28_800_000) // 86_400_000).alias("day")
    fen = (pl.col("amount").cast(pl.Float64) * 100).round().cast(pl.Int64).alias("fen")
    scan = lambda t: pl.scan_parquet(files(ledger, t))
    m = (scan("merchants").filter(pl.col("registered_on") <= dt.date.fromisoformat(as_of))
         .select("merchant_id").unique())
    wallet = scan("wallet_flows").select("merchant_id", "kind", day, fen).filter(pl.col("day") <= d)
    spot = wallet.filter(pl.col("kind") == "SPOT_SALE")
    esc = (scan("escrow_events")
           .select("merchant_id", "kind", "code", day, fen,
                   (pl.col("frozen_amount").cast(pl.Float64).fill_null(0) * 100).round().cast(pl.Int64).alias("frozen"))
           .filter(pl.col("day") <= d))
    ops = scan("operations").select("merchant_id", "kind", "on_time", day).filter(pl.col("day") <= d)
    cmp = scan("complaints").select("merchant_id", day).filter(pl.col("day") <= d)
    rev = (pl.concat([spot.select("merchant_id", "day", "fen"),
                      esc.filter(pl.col("kind") == "RELEASE").select("merchant_id", "day", "fen")])
           .filter(d - pl.col("day") < 360)
           .with_columns(((d - pl.col("day")) // 30).alias("k"))
           .group_by("merchant_id", "k").agg(pl.col("fen").sum()))
    six = (m.join(pl.LazyFrame({"k": list(range(6))}), how="cross")
           .join(rev, on=["merchant_id", "k"], how="left")
           .with_columns((pl.col("fen").fill_null(0) / 100.0).alias("y"))
           .group_by("merchant_id").agg((pl.col("y").std(ddof=0) / pl.col("y").mean()).alias("cv"),
                                        pl.col("y").mean().alias("mean")))
    first = (pl.concat([spot.select("merchant_id", "day"), esc.select("merchant_id", "day"),
                        ops.select("merchant_id", "day")])
             .group_by("merchant_id").agg(pl.col("day").min().alias("first")))
    revs = rev.group_by("merchant_id").agg(
        pl.col("fen").filter(pl.col("k") < 1).sum().alias("r30"),
        pl.col("fen").filter(pl.col("k") < 3).sum().alias("r90"),
        pl.col("fen").sum().alias("r365"))
    s = spot.group_by("merchant_id").agg(
        pl.col("day").max().alias("last_sale"),
        pl.col("day").filter(pl.col("day") > d - 30).n_unique().alias("active"))
    w = (wallet.filter((pl.col("kind") == "WITHDRAWAL") & (pl.col("day") > d - 30))
         .group_by("merchant_id").agg(pl.len().alias("wd")))
    c = cmp.filter(pl.col("day") > d - 90).group_by("merchant_id").agg(pl.len().alias("cmp"))
    kind, code = pl.col("kind"), pl.col("code")
    e = esc.group_by("merchant_id").agg(
        pl.when(kind == "PREPAYMENT").then(pl.col("fen"))
          .when(kind.is_in(["REDEMPTION", "REFUND_COMPLETED"])).then(-pl.col("fen"))
          .when((kind == "EXPIRY") & (code == "RELEASE_TO_MERCHANT")).then(-pl.col("fen"))
          .otherwise(0).sum().alias("liability"),
        pl.when(kind == "PREPAYMENT").then(pl.col("frozen"))
          .when(kind == "RELEASE").then(-pl.col("fen"))
          .when((kind == "REFUND_COMPLETED") & (code == "ESCROW")).then(-pl.col("fen"))
          .otherwise(0).sum().alias("frozen"),
        pl.col("fen").filter((kind == "PREPAYMENT") & (pl.col("day") > d - 30)).sum().alias("p30"))
    p = (ops.filter((pl.col("kind") == "PAYROLL") & pl.col("on_time").is_not_null() & (pl.col("day") > d - 180))
         .group_by("merchant_id").agg(pl.col("on_time").cast(pl.Float64).mean().alias("pay")))
    res = (m.join(revs, on="merchant_id", how="left").join(six, on="merchant_id", how="left")
           .join(first, on="merchant_id", how="left").join(s, on="merchant_id", how="left")
           .join(w, on="merchant_id", how="left").join(c, on="merchant_id", how="left")
           .join(e, on="merchant_id", how="left").join(p, on="merchant_id", how="left")
           .select("merchant_id",
                   (pl.col("r30").fill_null(0) / 100.0).alias("rev_total_30d"),
                   (pl.col("r90").fill_null(0) / 100.0).alias("rev_total_90d"),
                   (pl.col("r365").fill_null(0) / 100.0).alias("rev_total_365d"),
                   pl.when((d - pl.col("first") + 1 >= 180) & (pl.col("mean") > 0)).then(pl.col("cv")).alias("rev_cv_6m"),
                   (d - pl.col("last_sale")).cast(pl.Float64).alias("days_since_last_sale"),
                   (pl.col("active").fill_null(0) / 30.0).alias("active_days_ratio_30d"),
                   pl.col("wd").fill_null(0).cast(pl.Float64).alias("withdrawals_30d"),
                   pl.col("cmp").fill_null(0).cast(pl.Float64).alias("complaints_90d"),
                   (pl.col("p30").fill_null(0) / 100.0).alias("prepaid_sales_30d"),
                   (pl.col("liability").fill_null(0) / 100.0).alias("prepaid_liability"),
                   pl.when(pl.col("liability") > 0).then(pl.col("frozen") / pl.col("liability")).alias("escrow_coverage"),
                   pl.col("pay").alias("payroll_on_time_ratio_6m")))
    res.collect().write_parquet(out)
    return time.perf_counter() - t0


def compare(paths):
    import pyarrow.parquet as pq
    tables = [pq.read_table(p).to_pandas().set_index("merchant_id") for p in paths]
    base = tables[0]
    worst = 0.0
    for other, name in zip(tables[1:], paths[1:]):
        assert set(other.index) == set(base.index), f"{name}: different merchants"
        other = other.loc[base.index]
        for f in FEATURES:
            for a, b in zip(base[f], other[f]):
                na, nb = a is None or (isinstance(a, float) and math.isnan(a)), b is None or (isinstance(b, float) and math.isnan(b))
                assert na == nb, f"{name}: {f} null mismatch ({a} vs {b})"
                if not na:
                    err = abs(a - b) / max(1.0, abs(a))
                    worst = max(worst, err)
                    assert err <= 1e-9, f"{name}: {f} differs: {a} vs {b}"
    print(f"agreement: {len(base)} merchants × {len(FEATURES)} characteristics, max relative difference {worst:.1e}")


if __name__ == "__main__":
    if sys.argv[1] == "compare":
        compare(sys.argv[2:])
    else:
        engine, ledger, as_of, out = sys.argv[1:5]
        secs = {"duckdb": run_duckdb, "polars": run_polars}[engine](ledger, as_of, out)
        print(f"{engine}: {secs:.2f} s inside the engine")
