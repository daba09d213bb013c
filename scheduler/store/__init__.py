"""Every SQL statement of the project, one module per aggregate. The caller owns the transaction."""
