"""A database-driven cron scheduler for Celery."""

__version__ = "0.1.0"
