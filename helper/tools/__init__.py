"""Tools over finished runs: the report, plots, reproduction of published tables, fetching teachers."""
