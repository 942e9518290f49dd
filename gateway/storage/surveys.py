"""Follow-up survey cases (电子化回访) in the database: invitations, page sessions, one-time codes,
the identity check, answers page by page, completion, contact requests, voice answers, expiry and
revocation. What the pages (gateway/web/survey_pages.py), the voice flow and the API use.

The API, gathered here from its modules: survey_invitations (invitations, sessions), survey_identity
(one-time codes, the identity check), survey_results (pages, completion, contact, voice, expiry,
revocation), survey_queries (reading), survey_common (the transaction, the row lock, the chain's
append). Every change is one write transaction that locks the invitation's row first, and
appends its audit event (hash-chained, surveys/audit.py) and its outbox rows in that transaction,
so a crash leaves either the change with its trail and deliveries or none of them. Idempotent:
the same invitation request returns the same case (UNIQUE policy and survey), a page form posted
twice is recorded once (UNIQUE submission key), a second completion returns the first's result
(the outbox rows are unique per topic and invitation).

States: issued -> opened (first visit) -> verified (identity passed) -> completed; or expired (the
cooling-off deadline passed first) or revoked (closed by the insurer). Outcomes: success and
problem (completed; a problem case has an answer other than the expected one), outside_cooling_off
(expired: the period ended without a completed survey, so the answers can no longer count as the
in-period 回访; completing after the deadline is refused and expires the case instead),
not_completed (revoked before it was completed).

Outbox topics (aggregate: the invitation id): `survey_result` for every completed or closed case,
`survey_problem` for a problem case (a follow-up task, `due_at` by `follow_up_due`), and
`survey_followup` when the customer asks to be called ("请电话联系我").
"""

from __future__ import annotations

from gateway.storage.survey_common import (  # noqa: F401 - the API
    CHANNELS, CLOSED, DEFAULT_ZONE, MAX_BATCH, OPEN, TOPIC_FOLLOWUP, TOPIC_PROBLEM, TOPIC_RESULT, Incomplete,
    InvitationClosed, NotVerified, append_event, follow_up_due, holder_id, result_payload,
)
from gateway.storage.survey_identity import Issued, code_sent, issue_code, verify_identity  # noqa: F401
from gateway.storage.survey_invitations import (  # noqa: F401
    create_invitations, invitation_by_token, invitation_with_session, link, open_session, session_by_cookie,
)
from gateway.storage.survey_queries import events, figures, get, query, verify_chain  # noqa: F401
from gateway.storage.survey_results import (  # noqa: F401
    add_event, complete, expire_due, record_voice_answers, request_contact, revoke, save_page,
)

__all__ = [
    "Incomplete", "InvitationClosed", "NotVerified", "Issued", "append_event", "add_event", "create_invitations",
    "invitation_by_token", "invitation_with_session", "link", "open_session", "session_by_cookie", "issue_code",
    "code_sent",
    "verify_identity", "save_page", "complete", "request_contact", "record_voice_answers", "expire_due", "revoke",
    "get", "query", "figures", "events", "verify_chain", "follow_up_due", "holder_id", "result_payload",
]
