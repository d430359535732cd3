"""Training regimes, one module each, registered by name (= module name)."""
from trainables.regimes.base import REGIMES, Regime, RegimeParams, build_regime, ce_with_logs, register_regime

__all__ = ["REGIMES", "Regime", "RegimeParams", "build_regime", "ce_with_logs", "register_regime"]
