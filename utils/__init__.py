"""Training, data and evaluation helpers, one concern per module."""
