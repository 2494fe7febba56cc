"""Write two scenarios shaped like the learning examples ASSUME ships besides 02a/02b/02e,
built from the shared example_02b at run time (its data is used by path, never copied
into this repository):

* ``like_02c``: example_02b with ten learning CCGTs of 500 MW (``pp_6`` .. ``pp_15``, the
  unit list of ASSUME's example_02c) and the 5,000 MW CCGT at 34 EUR/MWh extra cost as
  ``pp_16``. Ten learners with one marginal cost and room to spare: a competitive market,
  whose equilibrium is every learner bidding its marginal cost and earning nothing.
* ``like_02d``: example_02b's market with every plant bidding by rule and one learning
  solar unit of 500 MW (``renewable_energy_learning_single_bid``, as in ASSUME's
  example_02d). Its availability is a seeded synthetic profile (a daylight curve times a
  daily cloud factor and a seasonal factor), since the shared examples hold no solar
  series for this market.

    python benchmarks/make_heldout_like.py OUT_DIR [--seed 0]
    python benchmarks/bench_quality.py --scenario OUT_DIR/like_02c OUT_DIR/like_02d --seeds 0 1 2

These check that the trainer's defaults hold on markets they were not tuned on (see
"Learning quality per scenario" in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ASSUME = Path(__file__).resolve().parents[2] / "shared" / "scenarios" / "assume"
HEADER = "name,technology,bidding_EOM,fuel_type,emission_factor,max_power,min_power,efficiency,additional_cost,unit_operator"
RULE_PLANTS = [  # the five base-load plants of example_02b
    "pp_1,nuclear,powerplant_energy_naive,uranium,0.0,1000,1,0.36,10.0,Operator 1",
    "pp_2,nuclear,powerplant_energy_naive,uranium,0,1000,1,0.36,10,Operator 1",
    "pp_3,lignite,powerplant_energy_naive,lignite,0.406,1000,1,0.41,2.0,Operator 1",
    "pp_4,hard coal,powerplant_energy_naive,hard coal,0.335,1000,1,0.48,1.0,Operator 1",
    "pp_5,hard coal,powerplant_energy_naive,hard coal,0.335,1000,1,0.48,1.0,Operator 1",
]


def ccgt(i: int, strategy: str, power: int = 500, extra: float = 4.0) -> str:
    return f"pp_{i},combined cycle gas turbine,{strategy},natural gas,0.201,{power},1,0.60,{extra},Operator 1"


def write(out: Path, name: str, plants: list[str]) -> Path:
    src = ASSUME / "example_02b"
    dst = out / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    (dst / "powerplant_units.csv").write_text("\n".join([HEADER] + plants) + "\n")
    return dst


def solar_profile(index: pd.DatetimeIndex, seed: int) -> np.ndarray:
    """Availability in [0, 1]: daylight curve x daily cloud factor x season, seeded."""
    rng = np.random.default_rng(seed)
    hour = index.hour + index.minute / 60.0
    day = (index.normalize() - index[0].normalize()).days.to_numpy()
    daylight = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None) ** 1.5
    cloud = rng.uniform(0.3, 1.0, size=int(day.max()) + 1)[day]
    season = 0.5 + 0.4 * np.sin((index.day_of_year.to_numpy() - 80) / 365.0 * 2 * np.pi)
    return np.clip(daylight * cloud * season, 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0, help="seed of like_02d's synthetic solar profile")
    args = p.parse_args(argv)
    if not (ASSUME / "example_02b").exists():
        print(f"{ASSUME / 'example_02b'} is absent: these scenarios are built from it", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    c = write(args.out, "like_02c", RULE_PLANTS + [ccgt(i, "powerplant_energy_learning") for i in range(6, 16)]
              + [ccgt(16, "powerplant_energy_naive", 5000, 34.0)])
    d = write(args.out, "like_02d", RULE_PLANTS + [ccgt(i, "powerplant_energy_naive") for i in range(6, 15)]
              + [ccgt(15, "powerplant_energy_naive", 5000, 34.0),
                 "Solar,solar,renewable_energy_learning_single_bid,renewable,0,500,0,1,0,renewables_operator"])
    demand = pd.read_csv(d / "demand_df.csv", index_col=0, parse_dates=True)
    pd.DataFrame({"Solar": solar_profile(demand.index, args.seed)}, index=demand.index).to_csv(d / "availability_df.csv")
    print(c)
    print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
