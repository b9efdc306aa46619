"""The errors of evaluating a registered policy: inputs its schema refuses, or an engine that
could not give an answer."""

from __future__ import annotations

from ledger.errors import ProvError


class PolicyInputsInvalid(ProvError):
    """The recorded policy inputs do not match the policy's schema; the pointer names the
    input at fault (``/inputs/...``)."""

    kind = "policy-inputs-invalid"
    title = "Policy inputs do not match the policy's schema"


class PolicyEvaluationFailed(ProvError):
    """The engine gave no answer: the policy raised or erred on the inputs, its code or
    document cannot be loaded, or the stored document is not what its digest says."""

    kind = "policy-evaluation-failed"
    title = "Policy could not be evaluated"
