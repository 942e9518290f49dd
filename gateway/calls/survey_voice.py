"""Surveys by voice, the gateway's side: each survey of the surveys directory runs as a flow
(`survey_<name>`, built by surveys.voice, registered with the other flows at start); a call of
it gets the gateway's own values from its invitation and policy (`SurveyCalls.prepare`, a call
preparer: the expected identity answer, the wording and the questions the product shows); its
final result is stored where the web's answers are (`SurveyCalls.listen`, a result listener:
gateway.storage.surveys.record_voice_answers, with the flow result's id; the transcript stays in
flow_results / transcript_segments).

A call names its case by `invitation_id` (the survey campaign's outbound voice step puts it in
the call's params; an inbound caller may give it) or, inbound, by `policy_number`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import select

from speech.dialogue.binding import bind
from speech.dialogue.engine import Extractor
from speech.dialogue.flow import Flow, FlowError, parse_flow
from speech.understanding.kinds import KindRegistry
from surveys.definition import Survey, SurveyError, load_surveys
from surveys.voice import (
    EXPECTED_PARAM, INVITATION_PARAM, NOT_VERIFIED, POLICY_PARAM, PROBLEM, VoiceSurveyError, answers_from_slots,
    call_values, identity_passed, survey_flow,
)

from gateway.calls.core_events import SaveReport
from gateway.calls.flow_turns import FlowTurns
from gateway.storage import surveys as survey_store
from gateway.storage.database import policies
from gateway.storage.survey_common import InvitationClosed, aware
from gateway.telephony.base import CallStart

log = logging.getLogger(__name__)

# The flow's statuses that end the call by the survey (answers stored); a transfer, a refusal or a
# failed identity check asks a person to call back (a follow-up task, as "请电话联系我" on a page).
ANSWERED = frozenset({"complete", PROBLEM, NOT_VERIFIED})
FOLLOW_UP = {"transferred": "电话回访中客户要求转人工", "refused": "电话回访中客户表示不方便",
             NOT_VERIFIED: "电话回访身份核实未通过"}


def surveys_path(config_dir: Path, surveys_dir: str | Path | None = None) -> Path:
    """`settings.surveys_dir`, or config/surveys beside the flows."""
    return Path(surveys_dir).expanduser().resolve() if surveys_dir else Path(config_dir) / "surveys"


def survey_flows(directory: Path, registry: KindRegistry) -> tuple[dict[str, tuple[Flow, Extractor]], dict[str, Survey]]:
    """Every survey's voice flow, bound to the kinds, by flow name; and the surveys, by flow name.
    A survey that cannot run by voice is left out, loudly (its web pages still run it)."""
    if not directory.is_dir():
        return {}, {}
    flows: dict[str, tuple[Flow, Extractor]] = {}
    by_flow: dict[str, Survey] = {}
    try:
        surveys = load_surveys(directory)
    except (SurveyError, OSError) as exc:  # the survey API refuses them too; calls of other flows go on
        log.error("no survey runs by voice: %s", exc)
        return {}, {}
    for survey in surveys.values():
        source = f"{survey.path or directory / survey.name} (voice flow)"
        try:
            flow, reader = bind(parse_flow(survey_flow(survey), source=source), registry)
        except (VoiceSurveyError, FlowError, SurveyError) as exc:
            log.error("survey %s will not run by voice: %s", survey.name, exc)
            continue
        flows[flow.name] = (flow, reader)
        by_flow[flow.name] = survey
    return flows, by_flow


def call_seconds(transcript: list[dict[str, Any]]) -> float | None:
    """The call's length from its transcript's first to last entry (the case's time spent)."""
    try:
        times = [datetime.fromisoformat(entry["at"]) for entry in transcript if entry.get("at")]
    except (TypeError, ValueError):
        return None
    return (max(times) - min(times)).total_seconds() if len(times) > 1 else None


class SurveyCalls:
    """The call preparer and result listener of survey calls (wired by the app)."""

    def __init__(self, services: Any) -> None:
        self.services = services  # gateway.services.Services: its dialogues are loaded in the background

    def _survey(self, flow: str | None) -> Survey | None:
        dialogues = self.services.dialogues
        return getattr(dialogues, "surveys", {}).get(flow or "") if dialogues is not None else None

    async def _invitation(self, survey: Survey, params: Mapping[str, str]) -> dict | None:
        engine = self.services.database.engine
        invitation = None
        if params.get(INVITATION_PARAM):
            invitation = await survey_store.get(engine, params[INVITATION_PARAM].strip())
        elif params.get(POLICY_PARAM):  # one case per policy and survey
            _, rows = await survey_store.query(engine, survey=survey.name,
                                               policy_number=params[POLICY_PARAM].strip(), limit=1)
            invitation = rows[0] if rows else None
        if invitation is None or invitation.get("survey") != survey.name:
            return None
        return invitation

    async def _id_suffix(self, policy_number: str) -> str:
        """The policyholder's ID number's last four characters, as the pages check them."""
        async with self.services.database.engine.connect() as conn:
            row = (await conn.execute(select(policies).where(policies.c.policy_number == policy_number))).mappings().first()
        return survey_store.holder_id(row)[-4:] if row is not None else ""

    async def prepare(self, start: CallStart) -> dict[str, str]:
        survey = self._survey(FlowTurns.flow_name(start))
        if survey is None:
            return {}
        try:
            return await self._prepare(survey, start)
        except Exception:  # noqa: BLE001 - never the caller's own expected answer: the call ends
            log.exception("survey call %s: its case could not be looked up", start.call_id)
            return {EXPECTED_PARAM: ""}

    async def _prepare(self, survey: Survey, start: CallStart) -> dict[str, str]:
        invitation = await self._invitation(survey, start.params)
        if invitation is None or invitation.get("status") in ("completed", "expired", "revoked"):
            # no case to answer: the flow misses its expected answer and the call ends at once
            log.warning("survey call %s: no open invitation of %s for %s", start.call_id, survey.name,
                        "the invitation given" if start.params.get(INVITATION_PARAM) else "the policy given")
            return {EXPECTED_PARAM: ""}
        locked = aware(invitation.get("locked_until"))
        if locked is not None and locked > self.services.now():
            # too many wrong codes on the pages: no identity check by voice either until it passes
            log.warning("survey call %s: invitation %s is locked until %s", start.call_id, invitation["id"],
                        locked.isoformat())
            return {EXPECTED_PARAM: ""}
        suffix = await self._id_suffix(invitation["policy_number"])
        if not suffix:
            log.warning("survey call %s: invitation %s has no policy record with an ID number", start.call_id,
                        invitation["id"])
        return call_values(survey, invitation.get("context") or {}, expected_id_suffix=suffix)

    async def listen(self, save: SaveReport) -> None:
        survey = self._survey(save.flow)
        if survey is None or save.status not in (*ANSWERED, *FOLLOW_UP, "partial"):
            return  # (a hang-up midway is `partial`: what was answered is kept, the case stays open)
        invitation = await self._invitation(survey, save.params)
        if invitation is None:
            log.warning("survey result %s: no invitation of %s to store it with", save.report_id, survey.name)
            return
        try:
            await self._store(survey, invitation, save)
        except InvitationClosed as exc:  # expired or revoked during the call: the call stays in flow_results
            log.warning("survey result %s not stored with its case: %s", save.report_id, exc)

    async def _store(self, survey: Survey, invitation: dict, save: SaveReport) -> None:
        services = self.services
        engine, now, settings = services.database.engine, services.now(), services.settings
        passed = identity_passed(save.slots)
        if save.status in ANSWERED or passed:
            # what was answered is kept (a transfer after the identity step: the answers so far);
            # the store completes the case once every required question is answered
            await survey_store.record_voice_answers(
                engine, invitation["id"], survey, answers=answers_from_slots(survey, save.slots),
                identity_passed=passed, result_id=save.report_id, now=now,
                seconds=call_seconds(save.transcript),
                min_seconds_per_question=settings.survey_min_seconds_per_question,
                shared_limit=settings.survey_shared_device_limit, zone=services.zone)
        if save.status in FOLLOW_UP:  # a person calls back
            await survey_store.request_contact(engine, invitation["id"], now=now, page="voice",
                                               note=f"{FOLLOW_UP[save.status]}（通话结果 {save.report_id}）")
