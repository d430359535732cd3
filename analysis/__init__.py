"""Post-hoc analysis of sweep results: runs, Pareto fronts, plots, reports, benchmarks."""
