"""mlstack: a production-shaped MLflow stack on your own machine, in one command."""

__version__ = "0.1.0"
