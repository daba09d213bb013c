"""Helpers every test tier shares: processes, SQL, broker readers, run rows."""
