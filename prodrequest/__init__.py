"""prodrequest package."""
