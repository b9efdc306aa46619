"""The `prov` command line: one module per group of subcommands."""
