"""prodmanager package."""
