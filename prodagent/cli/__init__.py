"""Command-line entry points: prodAgentd (operators) and prodagent (inspection and admin)."""
