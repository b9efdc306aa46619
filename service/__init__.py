"""The composition root: settings, the application factory and the `prov` command line."""
