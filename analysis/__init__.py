"""Pure statistics over a validated tidy DataFrame of transfer results (no mlflow, no torch imports).

The same functions run on runs read back from MLflow and on an external results table.
"""

from analysis.regimes import regime_summary
from analysis.tidy import TIDY_COLUMNS, aggregate_seeds, make_tidy, validate_tidy

__all__ = ["TIDY_COLUMNS", "aggregate_seeds", "make_tidy", "regime_summary", "validate_tidy"]
