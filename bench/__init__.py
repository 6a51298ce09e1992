"""Strata benchmarks. Each scenario prints JSON; figures are ratios against a baseline
measured in the same run (these machines are noisy; absolute numbers are not comparable
between runs)."""
