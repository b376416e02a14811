"""payload package."""
