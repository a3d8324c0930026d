"""One project as every command sees it: its config, state, credentials and specs, the probes of
its services, and the procedures two commands share (backups, migrations, served models)."""
