"""The worker side: tracked tasks, their outcomes and what those set off, the message guard."""
