"""`prov witness serve`: the witness's HTTP app (C2SP tlog-witness), over
`ledger.witness.witness`; the command itself is `service.cli.witness`.
"""
