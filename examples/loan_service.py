"""A small loan-approval service that records each of its decisions in the ledger.

`underwrite` is the business logic: it looks up the applicant's credit report (a tool
call), asks a scoring model for an assessment, checks the lending policy and decides. Each
step is timed and kept, and the whole run becomes one `Decision` that the SDK signs with
the service's key and queues for the background sender. Receipts are printed once the
ledger has verifiably appended each record.

    python examples/loan_service.py register   # once: make and register the service key
    python examples/loan_service.py run        # underwrite a few applications

See examples/README.md for the setup against `prov serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from ingest.client import Client, ClientError, Receipt, digest_of, utc_now
from ingest.client.service_cli import register_command, service_client, service_parser
from ledger.records.decision import (
    Cost,
    Decision,
    LlmCall,
    Message,
    Model,
    Output,
    PolicyCheck,
    PolicyEvaluation,
    Prompt,
    Step,
    ToolCall,
    Usage,
)

TENANT = "acme"
SERVICE = "loan-underwriter"
AUTO_APPROVE_LIMIT = Decimal(25_000)
MIN_SCORE = 640
MAX_DTI = 0.40
# The policy's parameters; their digest names the policy version in each record.
POLICY = {"max_amount": str(AUTO_APPROVE_LIMIT), "min_score": MIN_SCORE, "max_dti": MAX_DTI}
PROMPT_TEMPLATE = "Assess the credit risk of a {product} loan of {amount} USD. Bureau: {bureau}"
MODEL = Model(provider="acme-ml", name="loan-scorecard", version="2025.06.1", temperature=0.0)
PRICE_PER_TOKEN = Decimal("0.000002")  # USD, the internal chargeback rate
T = TypeVar("T")


@dataclass(frozen=True)
class Application:
    id: str
    applicant: str
    amount: Decimal
    monthly_income: Decimal
    monthly_debt: Decimal


def timed(work: Callable[[], T]) -> tuple[T, datetime, datetime]:
    """The result of `work`, with when it started and ended: a step's timestamps."""
    begin = utc_now()
    result = work()
    return result, begin, utc_now()


def credit_bureau_lookup(applicant: str) -> dict[str, Any]:
    """A stand-in for the bureau's API: a stable score per applicant."""
    seed = hashlib.sha256(applicant.encode()).digest()
    time.sleep(0.005)
    return {"score": 580 + seed[0] % 240, "open_accounts": seed[1] % 9, "report": "exp-2025-06"}


def scoring_model(messages: list[Message], score: int) -> tuple[str, int, int]:
    """A stand-in for a model call: an assessment text and its token counts."""
    prompt = " ".join(m.content for m in messages)
    risk = "low" if score >= 700 else "moderate" if score >= 640 else "high"
    text = f"risk={risk}; score {score} places the applicant in the {risk} band."
    return text, len(prompt.split()), len(text.split())


def underwrite(client: Client, app: Application) -> Decision:
    """Decide one application and return the record of how it was decided."""
    started = utc_now()
    bureau, begin, end = timed(lambda: credit_bureau_lookup(app.applicant))
    lookup = ToolCall(
        started_at=begin,
        ended_at=end,
        name="credit_bureau.lookup",
        call_id=f"call-{app.id}",
        arguments={"applicant": app.applicant},
        result=bureau,
    )

    variables = {"product": "personal", "amount": str(app.amount), "bureau": bureau["report"]}
    messages = [
        Message(role="system", content="You assess consumer credit risk. Answer risk=<band>."),
        Message(role="user", content=PROMPT_TEMPLATE.format(**variables)),
    ]
    (text, tokens_in, tokens_out), begin, end = timed(
        lambda: scoring_model(messages, bureau["score"])
    )
    call_usage = Usage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost=Cost(amount=(tokens_in + tokens_out) * PRICE_PER_TOKEN, currency="USD"),
        latency_ms=round((end - begin) / timedelta(milliseconds=1)),
    )
    assess = LlmCall(
        started_at=begin,
        ended_at=end,
        outputs={"text": text},
        usage=call_usage,
        finish_reason="stop",
    )

    dti = float(app.monthly_debt / app.monthly_income)
    reasons = [
        reason
        for reason, breached in (
            ("amount_above_auto_limit", app.amount > AUTO_APPROVE_LIMIT),
            ("score_below_640", bureau["score"] < MIN_SCORE),
            ("dti_above_0.40", dti > MAX_DTI),
        )
        if breached
    ]
    verdict = "deny" if reasons else "allow"
    begin = utc_now()
    check = PolicyCheck(
        started_at=begin,
        ended_at=utc_now(),
        inputs={"amount": str(app.amount), "score": bureau["score"], "dti": round(dti, 3)},
        outputs={"result": verdict},
    )
    steps: list[Step] = [lookup, assess, check]
    approved = verdict == "allow"
    return client.new_decision(
        "loan.approve",
        occurred_at=started,
        subject=app.applicant,
        inputs={"application_id": app.id, "amount": str(app.amount)},
        prompt=Prompt(
            template_id="loan-assessment",
            version="1.0.0",
            digest=digest_of(PROMPT_TEMPLATE.encode()),
            variables=variables,
            messages=messages,
        ),
        model=MODEL,
        steps=steps,
        output=Output(
            decision={"approved": approved, "reasons": reasons},
            text=text,
            finish_reason="stop",
        ),
        usage=Usage(
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost=call_usage.cost,
            latency_ms=round((utc_now() - started) / timedelta(milliseconds=1)),
        ),
        policy=PolicyEvaluation(
            engine="python",
            policy_id="lending/personal_loan",
            version="2025.06",
            digest=digest_of(POLICY),
            result=verdict,
            reasons=reasons,
        ),
    )


def applications(count: int) -> list[Application]:
    return [
        Application(
            id=f"LA-{n:04d}",
            applicant=f"applicant_{1000 + n}",
            amount=Decimal(5_000 + 4_000 * n),
            monthly_income=Decimal(4_200 + 350 * n),
            monthly_debt=Decimal(900 + 210 * n),
        )
        for n in range(count)
    ]


def run(args: argparse.Namespace) -> int:
    """Underwrite `--count` applications, recording each decision through the batcher."""
    client = service_client(args, tenant=TENANT, service=SERVICE)
    if client is None:
        return 2
    failures = 0
    with client:
        submitted: list[tuple[Application, Future[Receipt]]] = []
        for app in applications(args.count):
            decision = underwrite(client, app)
            submitted.append((app, client.submit(decision)))
        client.flush()
        for app, future in submitted:
            try:
                receipt = future.result()
            except ClientError as error:
                failures += 1
                print(f"{app.id}: not recorded: {error}", file=sys.stderr)
                continue
            print(
                json.dumps(
                    {
                        "application": app.id,
                        "id": receipt.id,
                        "index": receipt.index,
                        "status": receipt.status,
                        "leaf_hash": receipt.leaf_hash,
                        "integrated_at": receipt.integrated_at,
                    }
                )
            )
        if client.verifier_key is not None and not args.verifier_key:
            print(
                f"verifier key fetched from the server (trust on first use): "
                f"{client.verifier_key.encode()}",
                file=sys.stderr,
            )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = service_parser(__doc__, key_file="loan-underwriter.key")
    parser.add_argument("--count", type=int, default=5, help="applications to underwrite")
    args = parser.parse_args(argv)
    return register_command(args, SERVICE) if args.command == "register" else run(args)


if __name__ == "__main__":
    sys.exit(main())
