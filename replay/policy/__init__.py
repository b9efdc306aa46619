"""Policy as code: the engines that evaluate registered policies, and policy checks.

A decision records the policy that judged it; `replay.policy` re-runs the decision's
recorded policy inputs against that registered version (which must reproduce the recorded
result) or another one (what would it have decided?), and makes each check a ledger record.
See docs/policy.md.
"""
