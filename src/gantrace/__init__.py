"""gantrace: training-data and generative-model fingerprints in synthetic CT slices."""

__version__ = "0.1.0"
