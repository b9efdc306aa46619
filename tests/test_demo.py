"""Demo decisions and the UCAN delegations they carry: deterministic, complete, consistent."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from msgspec import inspect

from ledger import ucan
from ledger.demo import DEMO_SERVICES, SCENARIOS, demo_decision, demo_decisions
from ledger.record import Decision, encode_decision

BATCH = list(demo_decisions(30, seed=7))
# The sizes demo payloads land in (bytes of encoded JSON); the delegation chain is ~1.5 KB.
SIZE_RANGE = (3_400, 5_200)


def test_same_seed_same_records_other_seed_other_records() -> None:
    again = [encode_decision(d) for d in demo_decisions(30, seed=7)]
    assert again == [encode_decision(d) for d in BATCH]
    assert again != [encode_decision(d) for d in demo_decisions(30, seed=8)]
    first = demo_decision(random.Random(1), 4, tenant="globex")
    assert encode_decision(first) == encode_decision(
        demo_decision(random.Random(1), 4, tenant="globex")
    )
    assert first.tenant == "globex"


def test_scenarios_cycle_with_their_services() -> None:
    for index, decision in enumerate(BATCH):
        assert decision.decision_type == SCENARIOS[index % len(SCENARIOS)]
        assert decision.service == DEMO_SERVICES[decision.decision_type]


def test_ids_are_unique() -> None:
    ids = [d.id for seed in range(3) for d in demo_decisions(300, seed=seed)]
    assert len(set(ids)) == len(ids)


def test_sizes() -> None:
    sizes = {len(encode_decision(d)) for d in demo_decisions(300, seed=1)}
    assert SIZE_RANGE[0] <= min(sizes) <= max(sizes) <= SIZE_RANGE[1]


# --- together the scenarios fill every member ----------------------------------------------


def _owner(cls: type[msgspec.Struct], name: str) -> type[msgspec.Struct]:
    """The most basic class that declares `name`, so inherited members count once."""
    structs = [c for c in reversed(cls.__mro__) if issubclass(c, msgspec.Struct)]
    return next(c for c in structs[1:] if name in c.__struct_fields__)


def _schema(t: inspect.Type) -> Iterator[inspect.StructType]:
    match t:
        case inspect.StructType():
            yield t
            for field in t.fields:
                yield from _schema(field.type)
        case inspect.ListType(item_type=item):
            yield from _schema(item)
        case inspect.UnionType(types=members):
            for member in members:
                yield from _schema(member)


def _instances(value: Any) -> Iterator[msgspec.Struct]:
    if isinstance(value, msgspec.Struct):
        yield value
        for name in value.__struct_fields__:
            yield from _instances(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            yield from _instances(item)


def _default(field: inspect.Field) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return msgspec.UNSET  # how inspect shows an UNSET default


def test_together_the_scenarios_fill_every_optional_member() -> None:
    structs = {s.cls: s for s in _schema(inspect.type_info(Decision))}
    optional = {
        (_owner(cls, field.name), field.name)
        for cls, info in structs.items()
        for field in info.fields
        if not field.required
    }
    filled = {
        (_owner(type(obj), field.name), field.name)
        for obj in _instances(BATCH)
        for field in structs[type(obj)].fields
        if not field.required and getattr(obj, field.name) != _default(field)
    }
    missing = {f"{cls.__name__}.{name}" for cls, name in optional - filled}
    # The current version is never overridden, and the invocation is attached when a
    # demo decision is authorized (`ledger.demo.authorize`), after it is built.
    assert sorted(missing - {"Decision.schema_version", "Decision.invocation"}) == []
    assert {type(obj) for obj in _instances(BATCH)} == set(structs)  # every step kind too


# --- the values are consistent -------------------------------------------------------------


def test_timings_usage_and_costs_add_up() -> None:
    for decision in BATCH:
        assert decision.usage is not None
        steps = decision.steps
        assert steps[0].started_at > decision.occurred_at
        for before, after in itertools.pairwise(steps):
            assert before.ended_at <= after.started_at
        latency = (steps[-1].ended_at - decision.occurred_at) / timedelta(milliseconds=1)
        assert decision.usage.latency_ms == round(latency)
        usages = [s.usage for s in steps if s.usage is not None]
        assert decision.usage.input_tokens == sum(u.input_tokens for u in usages)
        assert decision.usage.output_tokens == sum(u.output_tokens for u in usages)
        assert decision.usage.cost is not None
        assert decision.usage.cost.amount == sum(u.cost.amount for u in usages if u.cost)


def test_inline_context_digests_match_and_some_snapshots_expire() -> None:
    expiring = 0
    for decision in BATCH:
        for snapshot in decision.context:
            if snapshot.value is not msgspec.UNSET:
                value_digest = hashlib.sha256(msgspec.json.encode(snapshot.value)).hexdigest()
                assert snapshot.digest == "sha256:" + value_digest
            if snapshot.valid_until is not None:
                assert snapshot.valid_until > snapshot.fetched_at
                expiring += 1
    assert 0 < expiring < sum(len(d.context) for d in BATCH)


# --- UCAN delegation chains ----------------------------------------------------------------


def _verify(delegation: ucan.Delegation) -> None:
    public_key = Ed25519PublicKey.from_public_bytes(ucan.public_key_from_did(delegation.iss))
    public_key.verify(delegation.signature, delegation.signed)  # raises if it does not verify


@pytest.mark.parametrize("decision", BATCH[:3], ids=SCENARIOS)
def test_each_record_carries_a_valid_chain_from_a_human_to_its_service(
    decision: Decision,
) -> None:
    chain = [ucan.decode_delegation(link.token) for link in decision.delegation]
    assert len(chain) == 2
    for link, token in zip(decision.delegation, chain, strict=True):
        _verify(token)
        assert (link.iss, link.aud, link.sub, link.cmd, link.exp) == (
            token.iss,
            token.aud,
            token.sub,
            token.cmd,
            token.exp,
        )
        assert token.nbf is not None
        assert token.exp is not None
        assert token.nbf <= decision.occurred_at.timestamp() < token.exp
    root, leaf = chain
    assert root.aud == leaf.iss
    assert root.iss == root.sub == leaf.sub
    assert leaf.cmd.startswith(root.cmd + "/")
    assert leaf.cmd == "/" + decision.decision_type.replace(".", "/")
    assert root.meta is not None
    assert root.meta["name"]


def test_chains_are_shared_by_one_service_and_distinct_across_services() -> None:
    leaves: dict[str, set[bytes]] = {}
    for decision in BATCH:
        leaves.setdefault(decision.service, set()).add(decision.delegation[-1].token)
    assert all(len(tokens) == 1 for tokens in leaves.values())
    assert len(set.union(*leaves.values())) == len(SCENARIOS)


# From ucan-wg/spec fixtures/1.0.0/delegation.json ("basic delegation bob > carol").
SPEC_TOKEN = base64.b64decode(
    "glhAd7jvZs44lTWmjSG/PWBRXvAdJA6Pq0fj86WQOVBYSw3fLrpjF7OMvjUlTynZZblPHzFsiBeBlUqtbCAHvhppCaJh"
    "aEg0Ae0B7QETcXN1Y2FuL2RsZ0AxLjAuMC1yYy4xp2NhdWR4OGRpZDprZXk6ejZNa21KY2VWb1FTSHM0NWNSZUVYb0x0"
    "V20xd29zQ0c4Ukx4Zkt3aHhvcXpvVGtDY2NtZGgvYWNjb3VudGNleHAaaIIMsWNpc3N4OGRpZDprZXk6ejZNa21UOWo2"
    "ZlZacXpYVjh1MndWVlN1NDlnWVNSWUdTUW5kdVdYRjZmb0FKcnF6Y3BvbIBjc3VieDhkaWQ6a2V5Ono2TWttVDlqNmZW"
    "WnF6WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemVub25jZUwnbSv2keQn/Kg2KsM="
)
# Bob's key in that file: base64(varint 0x1300 || 32-byte Ed25519 private key).
SPEC_BOB = base64.b64decode("gCZfj9+RzU2U518TMBNK/fjdGQz34sB4iKE6z+9lQDpCIQ==")[2:]


def test_spec_fixture_decodes_verifies_and_is_reproduced_byte_for_byte() -> None:
    token = ucan.decode_delegation(SPEC_TOKEN)
    assert token.iss == token.sub == "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz"
    assert token.aud == "did:key:z6MkmJceVoQSHs45cReEXoLtWm1wosCG8RLxfKwhxoqzoTkC"
    assert (token.cmd, token.pol, token.exp, token.nbf, token.meta) == (
        "/account",
        [],
        1753353393,
        None,
        None,
    )
    assert base64.b64encode(token.nonce) == b"J20r9pHkJ/yoNirD"
    _verify(token)
    bob = Ed25519PrivateKey.from_private_bytes(SPEC_BOB)
    assert ucan.did_key(bob.public_key().public_bytes_raw()) == token.iss
    made = ucan.delegate(bob, token.aud, token.sub, token.cmd, token.pol, token.exp, token.nonce)
    assert made == SPEC_TOKEN


def test_did_key_round_trips_keys_with_leading_zero_bytes() -> None:
    for public_key in (bytes(32), b"\0\0" + bytes(range(30)), bytes(range(224, 256))):
        did = ucan.did_key(public_key)
        assert did.startswith("did:key:z6Mk")
        assert ucan.public_key_from_did(did) == public_key
    with pytest.raises(ValueError, match="not a base58btc did:key"):
        ucan.public_key_from_did("did:web:example.com")
    with pytest.raises(ValueError, match="base58btc digit"):
        ucan.public_key_from_did("did:key:z6Mk0OIl")
