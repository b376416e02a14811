"""prodagent: the agent that turns allocations of work into jobs, runs, retries, merges and cleans them."""
