"""gapbench: measures, valid bounds and paper experiments for the generalization gap of deep networks."""

__version__ = "0.1.0"
