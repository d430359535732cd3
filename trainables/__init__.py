"""Everything that runs inside a trial: data, models, regimes, attacks, explanations, metrics, the loop."""
