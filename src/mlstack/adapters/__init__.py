"""Clients of the services themselves, one module each: PostgreSQL, S3, MLflow's HTTP API and
registry, and the backup archive format. Library errors become mlstack errors here."""
