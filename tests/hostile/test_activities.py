"""Activities fail fast on errors that no retry can fix: recording the end of a session with a
reason Postgres cannot store fails non-retryably (it used to retry without limit, so the
session stayed ACTIVE for good)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from services.store.event_store import EventStore
from tests.hostile.helpers import new_id
from workflows.activities.session_store import SessionStoreActivities
from workflows.messages import RecordEndInput


async def test_an_end_reason_with_a_nul_fails_without_retrying(store: EventStore) -> None:
    activities = SessionStoreActivities(store=store)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(
            activities.record_session_end,
            RecordEndInput(session_id=new_id("end"), reason="bye\x00", append_event=True),
        )
    assert caught.value.non_retryable
