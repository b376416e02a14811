"""Batch-system plugins: one small interface (`base.BatchPlugin`), one module per engine."""
