"""Jobs: the state machine and the job/file bookkeeping every component shares."""
