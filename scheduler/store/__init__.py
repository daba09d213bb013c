"""Every SQL statement of the project, one module per aggregate.

Each module holds one stateless store class (static methods) or, for DDL, plain functions.
They take the caller's session or connection and never commit: the caller owns the
transaction, and a unit of work is one transaction, retried whole.

One dialect per path, chosen by what the path needs:

- SQLAlchemy Core where filters vary or the statement is built from parts: schedules,
  history, the dashboard's pages and aggregates, alerts, accounts, audit;
- fixed `text()` statements with named binds where Core cannot say it plainly: the manual
  runs' and the sweeps' writes, the outlook, partition DDL and retention;
- asyncpg `$n` strings, prepared once per connection, on the hot paths: the worker's (claim,
  outcome, progress: `runs`, naming the run's partition with `run_tables`), the follow-ups of
  an outcome (`followups`): one round trip of ~0.5 ms, against ~1.5 ms of building and
  compiling through SQLAlchemy per call; and the beat pass's four bulk statements over arrays
  (lock the due rows, insert the runs, advance the schedules, mark them queued: `dispatch`,
  `outbox`), on the session's own connection (`common.transaction_driver`), which skips
  SQLAlchemy's result processing (1,000 locked rows: 4 ms of CPU against 9).

Status ids come from `scheduler.core.domain`. In fixed statements they are written in as
constants (never typed as digits) rather than bound: a partial index, such as the one over
unfinished runs, serves a query only when the planner can prove its predicate at plan time,
which a bound parameter of a generic plan does not allow.
"""
