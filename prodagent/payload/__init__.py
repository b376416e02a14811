"""The real payload and its job wrapper.

The agent writes a `JobSpec` (`jobspec`) as JOBDIR/job.json; a batch plugin runs
`python -m prodagent.payload.runjob JOBDIR`, which runs the transformation (`generate`:
Pythia 8 into a ROOT file; `merge`: ROOT files into one; or any command), watches it
(`watchdog`), judges it (`report`, `logscan`) and leaves JOBDIR/report.json. Error codes live
in `codes`; failure injection for tests and demos in `faults`.
"""
