"""What a process runs on: its event loop and engine, the database clock, logs, URLs, services."""
