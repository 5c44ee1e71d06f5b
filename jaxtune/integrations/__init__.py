"""Optional bridges to libraries users already have; each imports its library lazily."""

from jaxtune.integrations.optuna import OptunaSearch as OptunaSearch
