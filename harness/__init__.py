"""harness: honest baseline-vs-optimization benchmarks of ML training pipelines."""

__version__ = "0.1.0"
