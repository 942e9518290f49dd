"""Assemble the Starlette app from settings: routes, services, lifespan (and the background start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware

from speech.tts import SynthesisError, Synthesizer

from gateway.web.api import api_routes
from gateway.auth import Authenticator
from gateway import log_redaction
from gateway.calls.flow_call import Dialogues
from gateway.calls.registry import CallRegistry
from gateway.calls.survey_voice import SurveyCalls
from gateway.storage.database import Database
from gateway.metrics import Metrics
from gateway.model.fetch import ModelSpec, ensure_model
from gateway.model.graph import ensure_static_graph, is_compiled
from gateway.storage import migrate
from gateway.storage.instances import Instance
from gateway.storage.recovery import Keeper
from gateway.storage.outbox import OutboxWorker, Route
from gateway.web.routes import routes
from gateway.services import Services
from gateway.settings import Settings
from gateway.calls.speech_service import SpeechService, load_warmup_speech
from gateway.tts.factory import build_synthesizer
from gateway.web.twilio_voice import twilio_routes
from gateway.web.voice_hooks import outcome_listener, voice_routes
from gateway.web.vosk_port import VoskServerPort
from gateway.calls.events_webhook import forward_events
from gateway.web.reminders_api import reminder_routes
from gateway.web.surveys_api import survey_api_routes
from gateway.storage.survey_service import SurveyService
from gateway.web.survey_pages import start_pages, survey_routes
from scheduler.service import SchedulerService, build_dispatcher

log = logging.getLogger(__name__)

PROMPT_SAMPLE_RATE = 8000  # telephone band: what Twilio and most FreeSWITCH legs carry


def model_spec(settings: Settings) -> ModelSpec:
    return ModelSpec(
        name=settings.model_name,
        sha256=settings.model_sha256,
        url=settings.model_url,
        mirrors=settings.model_mirrors,
        cache_dir=settings.model_cache_path,
    )


def delivery_routes(settings: Settings) -> dict[str, Route]:
    """The outbox's webhook per topic, from claims_webhook_* and [webhooks.<topic>]."""
    return {topic: Route(r.url, r.secret, r.backoff_s) for topic, r in settings.delivery_routes.items()}


def start_synthesizer(settings: Settings) -> Synthesizer | None:
    """The prompt voice for platforms that play audio; a broken engine disables playback, loudly."""
    try:
        tts = build_synthesizer(
            settings.tts_engine, cache_dir=settings.data_path / "tts-cache", sample_rate=PROMPT_SAMPLE_RATE,
            http_url=settings.tts_http_url, http_api_key=settings.tts_http_api_key, voice=settings.tts_voice,
        )
        if tts is not None:
            tts.synthesize("您好")  # fails now, at start, rather than on the first caller
        return tts
    except (SynthesisError, ValueError) as exc:
        log.warning("prompts will not be spoken (tts_engine=%s): %s", settings.tts_engine, exc)
        return None


def start_speech(settings: Settings, model_path: Path, static: Path | None) -> SpeechService:
    """The speech service, on the static graph when one was compiled."""
    if static is not None:
        try:
            return SpeechService(model_path, settings.workers, settings.pool_size, static_model_path=static)
        except Exception as exc:  # noqa: BLE001 - Vosk raises a bare Exception on a bad model
            log.warning("static graph %s does not load (%s); decoding with the graph as shipped", static, exc)
    return SpeechService(model_path, settings.workers, settings.pool_size)


def start_warmup(settings: Settings, speech: SpeechService) -> None:
    if settings.warmup_audio_dir and speech.static_graph:
        log.info("recognizer warm-up skipped: recognizers on a static graph need none")
    elif settings.warmup_audio_dir:
        try:
            warmup = load_warmup_speech(Path(settings.warmup_audio_dir).expanduser(), settings.warmup_sample_rate)
        except ValueError as exc:
            log.warning("recognizers will not be warmed up: %s", exc)
        else:
            count = settings.warmup_recognizers or settings.pool_size
            log.info("warming %d recognizers on %.0f s of speech in the background",
                     count, len(warmup) / 2 / settings.warmup_sample_rate)
            speech.start_warmup(warmup, settings.warmup_sample_rate, count)


async def prepare_speech(services: Services, dialogues: Dialogues | None) -> None:
    """The background half of the start: model, static graph, recognizers, flows, prompt voice."""
    settings, startup = services.settings, services.startup
    startup.step(f"fetching the speech model {settings.model_name}")
    model_path: Path = await asyncio.to_thread(ensure_model, model_spec(settings))
    static = None
    if settings.static_graph:
        startup.step("compiling the static decoding graph" if not is_compiled(model_path)
                     else "loading the static decoding graph")
        static = await asyncio.to_thread(ensure_static_graph, model_path)
    startup.step("loading the speech model")
    speech = await asyncio.to_thread(start_speech, settings, model_path, static)
    services.speech = speech
    start_warmup(settings, speech)
    startup.step("loading flows")
    services.dialogues = dialogues or await asyncio.to_thread(Dialogues.from_config, settings.config_path,
                                                              settings.surveys_dir or None)
    startup.step("starting the prompt voice")
    services.tts = await asyncio.to_thread(start_synthesizer, settings)
    startup.done()
    log.info("gateway ready: model %s at %d Hz (%s graph), %d recognizer threads, up to %d calls",
             model_path.name, speech.sample_rate, "static" if speech.static_graph else "composed on the fly",
             speech.workers, settings.max_calls)


OUTBOX_FLUSH_S = 3.0  # at shutdown: how long the last deliveries (the drained calls' results) may take


async def drain(app: Starlette) -> None:
    """SIGTERM (`gateway serve`): refuse new calls, let calls in progress go on for `shutdown_drain_s`,
    then end the rest as `shutdown`; uvicorn's own shutdown (and the lifespan's end) follows."""
    services: Services = app.state.services
    await services.registry.drain(services.settings.shutdown_drain_s)


async def _last_deliveries(worker: OutboxWorker) -> None:
    """Deliver what is due before the process ends, for OUTBOX_FLUSH_S at most, beside the running
    worker (leases split the rows); what does not go now goes after the next start."""
    async def passes() -> None:
        async with httpx.AsyncClient(timeout=OUTBOX_FLUSH_S) as client:
            while await worker.deliver_due(client):
                pass

    try:
        await asyncio.wait_for(passes(), OUTBOX_FLUSH_S)
    except Exception as exc:  # noqa: BLE001 - delivery resumes at the next start
        log.warning("deliveries left for the next start: %s", exc or type(exc).__name__)


def _log_start_failure(exc: BaseException) -> None:
    log.error("gateway start failed: %s", exc)


def create_app(settings: Settings, dialogues: Dialogues | None = None,
               on_start_failure: Callable[[BaseException], None] = _log_start_failure,
               receipt_sink: Any = None) -> Starlette:
    """The gateway app. `dialogues` may be passed in when already loaded (they take seconds).

    The lifespan migrates the database, then lets the server listen; the model and recognizers
    are prepared in the background (`prepare_speech`). If that fails, `on_start_failure` gets the
    error (`gateway serve` then stops the server and exits 1). `receipt_sink` (a
    scheduler.channels.base.ReceiptSink) takes voice call receipts and reminder outcomes."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Here, not only in the CLI: uvicorn replaces its loggers' handlers when it is configured.
        log_redaction.install()
        # The schema first: an out-of-date one refuses the start before anything listens.
        database = Database.from_url(settings.effective_database_url)
        try:
            await migrate.prepare(database.engine, auto_upgrade=settings.db_auto_upgrade)
        except migrate.SchemaOutOfDate as exc:
            log.error("%s", exc)
            await database.close()
            raise
        auth = Authenticator(frozenset(settings.api_keys))
        if auth.open_loopback_only:
            log.warning("no API keys configured: serving loopback clients only")
        services = Services(
            settings=settings,
            auth=auth,
            registry=CallRegistry(settings.max_calls),
            metrics=Metrics(),
            database=database,
        )
        await services.reload_records()
        app.state.services = services
        # Follow-up surveys: definitions, catalog, link key and base URL, for the pages, API and voice.
        try:
            app.state.surveys = SurveyService.from_settings(settings)
        except (ValueError, OSError) as exc:  # a bad survey file: named in the log, the survey API says 503
            log.error("surveys are disabled: %s", exc)
            app.state.surveys = None

        async def prepare() -> None:
            try:
                await prepare_speech(services, dialogues)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the start ends it, in one line
                on_start_failure(exc)

        # One worker for every routed topic; with no route it only says which topics wait.
        worker = OutboxWorker(database.engine, delivery_routes(settings))
        services.outbox_wake = worker.wake
        # This process in `instances`; what dead ones left open is closed and delivered now, and
        # from then on whenever a peer's heartbeat expires (gateway/storage/recovery.py).
        keeper = Keeper(database.engine, Instance.new("gateway"), heartbeat_s=settings.instance_heartbeat_s,
                        dead_after_s=settings.instance_dead_after_s,
                        retention_s=settings.instance_retention_days * 86400, on_queued=worker.wake.set)
        await keeper.start()
        services.instance_id = keeper.instance_id

        background = [asyncio.create_task(prepare())]
        if settings.webhook_url:
            background.append(asyncio.create_task(forward_events(services.registry, settings.webhook_url)))
        background.append(asyncio.create_task(keeper.run()))
        delivering = asyncio.create_task(worker.run())
        # Reminders: the dispatcher serves the admin API and the receipt webhooks (its sink) in
        # every gateway; it also ticks here unless scheduler_enabled is off (`gateway scheduler`).
        services.reminders = build_dispatcher(settings, database.engine)
        reminder_service = SchedulerService(services.reminders, settings.scheduler_tick_s,
                                            settings.scheduler_plan_interval_s)
        if settings.scheduler_enabled:
            await reminder_service.start()
        # Provider receipts and replies, call progress and reminder-call outcomes: to the scheduler.
        sink = receipt_sink if receipt_sink is not None else services.reminders.sink
        services.receipt_sink = sink
        app.state.receipt_sink = sink
        services.result_listeners.append(outcome_listener(sink))
        # Surveys by voice: a survey call's values from its invitation, its answers stored with the web's.
        survey_calls = SurveyCalls(services)
        services.call_preparers.append(survey_calls.prepare)
        services.result_listeners.append(survey_calls.listen)
        # The survey pages: definitions, the code's SMS channel and the liveness provider, built once.
        app.state.survey_pages = start_pages(services, getattr(app.state, "surveys", None))
        if settings.claims_webhook_secret and not settings.claims_webhook_url:
            log.warning("claims_webhook_secret is set but claims_webhook_url is not: reports are stored, not delivered")
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if settings.scheduler_enabled:
                await reminder_service.stop()
            else:
                await services.reminders.aclose()
            try:  # calls the drain could not end are closed as `shutdown`; then this process is stopped
                await keeper.stop()
            except Exception:  # noqa: BLE001 - a database gone now: the next start recovers them
                log.exception("instance %s not marked stopped", keeper.instance_id)
            await _last_deliveries(worker)
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)
            if app.state.survey_pages is not None:
                await app.state.survey_pages.aclose()
            await database.close()
            if services.speech is not None:
                services.speech.close()

    return Starlette(routes=[*routes(), *api_routes(), *twilio_routes(), *voice_routes(), *reminder_routes(),
                             *survey_api_routes(), *survey_routes()],
                     lifespan=lifespan,
                     middleware=[Middleware(VoskServerPort, port=settings.vosk_server_port)])
