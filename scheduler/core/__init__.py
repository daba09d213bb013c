"""The pure core: schedule definitions, cron, planning, ids. No I/O here; time is a parameter."""
