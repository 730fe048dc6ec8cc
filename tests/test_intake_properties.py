"""Property tests: malformed, oversized and hostile payloads at every endpoint.

Always a 4xx with a reason, never a 5xx, and every rejected body is in the dead-letter table.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.triage_fixtures import am_alert, am_payload, auth, client_for, dead_letters, make_ctx

PATHS = ["/webhooks/alertmanager", "/webhooks/grafana", "/webhooks/generic"]

json_scalars = st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | \
    st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c,
                                                                                            max_size=5), max_leaves=25)


def mutate_alert() -> st.SearchStrategy[dict]:
    """Valid-looking payloads with one hostile field."""
    hostile = st.one_of(json_values, st.text(alphabet=st.characters(codec="utf-8"), max_size=3000),
                        st.just("\x00"), st.just("0001-01-01T00:00:00Z"), st.just("9999-99-99"),
                        st.just("x" * 5000), st.integers(), st.just(-1e300))
    field = st.sampled_from(["status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint",
                             "name", "starts_at", "severity", "service", "version", "alerts"])

    def build(args: tuple[str, object, bool]) -> dict:
        key, value, at_top = args
        body = am_payload(am_alert())
        if at_top:
            body[key] = value
        else:
            body["alerts"][0][key] = value
        return body

    return st.tuples(field, hostile, st.booleans()).map(build)


bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutate_alert().map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=3).map(lambda n: b'{"alerts": "' + b"A" * (70000 * n) + b'"}'),
    st.integers(min_value=50, max_value=5000).map(lambda d: b"[" * d + b"]" * d),
)


@pytest.mark.parametrize("path", PATHS)
async def test_every_endpoint_answers_hostile_input_without_5xx(db, path):
    ctx = make_ctx(db)
    seen: list[tuple[bytes, int]] = []

    async with client_for(ctx) as c:
        async def check(body: bytes) -> None:
            r = await c.post(path, data=body, headers=auth())
            assert r.status < 500, (r.status, await r.text())
            if r.status >= 400:
                assert 400 <= r.status < 500
                reason = (await r.json())["error"]
                assert isinstance(reason, str) and reason
            seen.append((body, r.status))

        # hypothesis generates the bodies (sync); each is then posted on this test's event loop.
        examples: list[bytes] = []

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(body=bodies)
        def collect(body: bytes) -> None:
            examples.append(body)

        collect()
        for body in examples:
            await check(body)

    rejected = [b for b, status in seen if status >= 400]
    stored = await dead_letters(db)
    assert len(stored) == len(rejected)
    for body, dl in zip(rejected, stored, strict=True):
        assert dl.body == body[: len(dl.body)] and dl.reason
    assert any(status == 413 for _, status in seen)
