"""gedidata: machine-learning datasets for aboveground-biomass estimation from GEDI L4A."""

__version__ = "0.1.0"
