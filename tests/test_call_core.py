"""The call core on its own: events and a fake clock in, actions out; no server, no sockets.

The shell's side is played here by answering the core's requests (audio opened, prompt
played for so long, audio flushed) the way the I/O would; the adapters and the flows are
the real ones.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from speech.codecs import Encoding
from speech.dialogue.records import RecordIndex
from speech.results import Transcript
from speech.stream import RecognitionOutcome

from gateway.calls.core import CallCore
from gateway.calls.core_events import (
    NOTHING, AudioOpened, CallStarted, ClearPlayback, Close, EndCallRow, Finished, Flushed, FlushAudio, OpenAudio,
    PromptPlayed, Publish, Recognized, SaveReport, Send, SetGrammar, Speak, StartCallRow, StoreSegment, Tick,
)
from gateway.calls.flow_call import Dialogues
from gateway.metrics import Metrics
from gateway.settings import load_settings
from gateway.telephony.base import CallStart, CallStop, ProtocolError, TextIn
from gateway.telephony.generic import GenericCallAdapter
from gateway.telephony.twilio import TwilioAdapter

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("Asia/Shanghai")
WALL = datetime(2026, 3, 19, 10, 16, tzinfo=ZONE)
NO_INPUT_S = 8.0


@lru_cache(maxsize=1)
def dialogues() -> Dialogues:
    return Dialogues.from_config(ROOT / "config")


class Shell:
    """The I/O side, faked: answers the core's requests and keeps every action it got."""

    def __init__(self, adapter=None, *, opened_at: float = 0.0, plays_s: float = 0.0, **settings) -> None:
        values = dict(no_input_s=NO_INPUT_S, prompt_chars_per_s=5.0, idle_timeout_s=30.0, max_call_s=600.0)
        values.update(settings)
        self.adapter = adapter or GenericCallAdapter()
        self.metrics = Metrics()
        self.core = CallCore(self.adapter, load_settings(environ={}).replace(**values), self.metrics,
                             opened_at=opened_at, dialogues=dialogues(),
                             new_report_id=lambda: "report-1")
        self.plays_s = plays_s  # how long each prompt plays
        self.now = opened_at
        self.position = 0.0  # seconds of call audio received
        self.actions: list = []

    def send(self, event) -> list:
        """Hand the core one event; every action it produced, requests answered on the way."""
        out = []
        actions = self.core.handle(event)
        while actions:
            out += actions
            last = actions[-1]
            if isinstance(last, OpenAudio):
                actions = self.core.handle(AudioOpened())
            elif isinstance(last, Speak):
                actions = self.core.handle(PromptPlayed(self.plays_s, self.now))
            elif isinstance(last, FlushAudio):
                actions = self.core.handle(Flushed(RecognitionOutcome()))
            else:
                break
        self.actions += out
        return out

    def start(self, start: CallStart | None = None, **fields) -> list:
        if start is None:
            start = CallStart(call_id=fields.pop("call_id", "c1"), encoding=Encoding.PCM16,
                              sample_rate=8000, caller_number="13800138000", **fields)
        out = self.send(CallStarted(start, True, self.now, WALL, RecordIndex(())))
        return out + self.message()

    def message(self, outcome: RecognitionOutcome | None = None, audio_s: float = 0.0, partial=None) -> list:
        """The end of one inbound message carrying `audio_s` of audio."""
        self.position += audio_s
        return self.send(Recognized(outcome, partial, self.position, audio_s > 0, self.now))

    def frames(self, seconds: float, step: float = 0.02) -> list:
        """Frames of line silence in real time: the clocks move together."""
        out = []
        for _ in range(round(seconds / step)):
            self.now += step
            out += self.message(audio_s=step)
        return out


def twilio_start(adapter: TwilioAdapter, params: dict[str, str]) -> CallStart:
    sid = "MZ" + "1" * 32
    (start,) = adapter.receive_text(json.dumps({"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "callSid": "CA" + "1" * 32, "accountSid": "AC" + "0" * 32, "tracks": ["inbound"],
        "customParameters": params, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
    return start


def sent(actions: list) -> list[dict]:
    return [json.loads(f) for a in actions if isinstance(a, Send) for f in a.frames if isinstance(f, str)]


def prompts(actions: list) -> list[dict]:
    return [e for e in sent(actions) if e.get("event") == "prompt"]


def of(kind, actions: list) -> list:
    return [a for a in actions if isinstance(a, kind)]


def final(text: str) -> RecognitionOutcome:
    return RecognitionOutcome(finals=[Transcript(text, True, confidence=0.9, start=0.5, end=1.5)], audio_seconds=1.0)


# --- starting ---------------------------------------------------------------------------
def test_a_flow_speaks_first_when_the_call_starts():
    shell = Shell()
    actions = shell.start(flow="claim_report")
    kinds = [type(a) for a in actions]
    assert kinds[:3] == [OpenAudio, StartCallRow, Publish]
    assert of(Publish, actions)[0].event["type"] == "call.started"
    (prompt,) = prompts(actions)
    assert prompt["slot"] == "reporter_name"
    # the prompt event goes out, then it is spoken, then the answer is listened for
    assert kinds.index(Send) < kinds.index(Speak) < kinds.index(SetGrammar)
    assert of(Speak, actions)[0].text == prompt["text"]
    assert not of(Close, actions)


def test_a_call_without_a_flow_only_listens():
    shell = Shell()
    actions = shell.start()
    assert [type(a) for a in actions] == [OpenAudio, StartCallRow, Publish]
    assert shell.core.timeout(shell.now) == 30.0  # only the idle limit runs


def test_the_per_frame_path_allocates_no_actions():
    shell = Shell()
    shell.start()
    assert shell.core.handle(Recognized(None, None, 0.02, True, 0.02)) is NOTHING


# --- no input -----------------------------------------------------------------------------
def test_no_input_by_the_wall_clock_when_frames_stop():
    shell = Shell(TwilioAdapter(), plays_s=3.0)
    shell.start(twilio_start(shell.adapter, {"flow": "claim_report"}))
    # The prompt plays 3 s, then the caller has no_input_s to answer; no frame came, so the
    # wall clock decides, with 2 s of slack for frames that may still be on their way.
    wait = shell.core.timeout(shell.now)
    assert wait == 3.0 + NO_INPUT_S + 2.0
    shell.now += wait
    actions = shell.send(Tick(shell.now))
    assert of(Speak, actions)
    assert any(t["text"] == "[no input]" for t in of(SaveReport, actions)[0].transcript)
    assert not of(Close, actions)


def test_no_input_by_the_calls_audio_clock_while_frames_keep_coming():
    shell = Shell()  # the client shows the prompt: it "plays" for its length at prompt_chars_per_s
    (first,) = prompts(shell.start(flow="claim_report"))
    answer_s = len(first["text"]) / 5.0 + NO_INPUT_S
    # The audio clock runs ahead of the wall clock here (a platform sending in bursts):
    # the answer is overdue after answer_s of call audio, however little wall time passed.
    asked = []
    for _ in range(int(answer_s / 0.1) + 2):
        shell.now += 0.01
        asked += prompts(shell.message(audio_s=0.1))
    assert [p["slot"] for p in asked] == ["reporter_name"]  # asked again, not skipped
    assert shell.now < answer_s / 5


def test_a_chat_caller_is_not_asked_again():
    shell = Shell()  # text protocol, no audio: silence is someone typing
    shell.start(flow="claim_report")
    shell.now += shell.core.timeout(shell.now)
    assert prompts(shell.send(Tick(shell.now))) == []


def test_a_typed_answer_is_saved_and_answered():
    shell = Shell()
    shell.start(flow="claim_report")
    shell.send(TextIn("我叫刘磊"))
    actions = shell.message()
    assert prompts(actions)  # the next question
    assert of(SaveReport, actions)[0].status == "in_progress"
    assert any(t["speaker"] == "caller" and t["text"] == "我叫刘磊" for t in of(SaveReport, actions)[0].transcript)


# --- barge-in -------------------------------------------------------------------------------
def test_caller_speech_clears_a_prompt_still_playing():
    shell = Shell(TwilioAdapter(), plays_s=4.0)
    shell.start(twilio_start(shell.adapter, {"flow": "claim_report"}))
    shell.now += 1.0
    actions = shell.message(RecognitionOutcome(audio_seconds=0.1), audio_s=0.1)
    (clear,) = of(ClearPlayback, actions)
    assert json.loads(clear.frames[0])["event"] == "clear"


def test_speech_after_the_prompt_ended_clears_nothing():
    shell = Shell(TwilioAdapter(), plays_s=4.0)
    shell.start(twilio_start(shell.adapter, {"flow": "claim_report"}))
    shell.now += 5.0
    assert not of(ClearPlayback, shell.message(RecognitionOutcome(audio_seconds=0.1), audio_s=0.1))


# --- limits -----------------------------------------------------------------------------------
def test_maximum_call_duration():
    shell = Shell(max_call_s=5.0, opened_at=100.0)
    shell.start()
    shell.now = 103.0
    assert shell.core.timeout(shell.now) == 2.0
    shell.now = 105.0
    assert shell.core.timeout(shell.now) == 0.0
    actions = shell.send(Tick(shell.now))
    assert isinstance(actions[0], FlushAudio)
    assert actions[-1] == Close(1000, "maximum call duration reached")
    assert not sent(actions)  # a normal close carries no error message


def test_idle_timeout_closes_with_an_error_and_keeps_the_last_words():
    shell = Shell(idle_timeout_s=1.0)
    shell.start()
    actions = shell.core.handle(Tick(1.0))
    assert actions == [FlushAudio()]
    actions = shell.core.handle(Flushed(final("你好 世界")))
    assert of(StoreSegment, actions) == [StoreSegment(1, "你好世界", 0.5, 1.5, 0.9)]
    assert [e["event"] for e in sent(actions)] == ["transcript", "error"]
    assert actions[-1] == Close(1008, "no message for 1 s")
    ended = shell.send(Finished(RecognitionOutcome(), 1.0, 1.0))
    assert ended[0] == EndCallRow("idle timeout", 1.0)
    assert ended[1].event["type"] == "call.ended" and ended[1].event["reason"] == "idle timeout"


# --- how calls end ----------------------------------------------------------------------------
def test_silence_escalates_to_a_transfer_that_lingers():
    shell = Shell()
    shell.start(flow="claim_report")
    shell.message(audio_s=0.02)  # a voice call: silence is no answer
    for _ in range(10):
        shell.now += shell.core.timeout(shell.now)
        actions = shell.send(Tick(shell.now))
        if of(Close, actions):
            break
    events = sent(actions)
    assert events[-1]["event"] == "transfer" and "no_input" in events[-1]["reason"]
    assert actions[-1] == Close(1000, "transfer", linger=True)
    kinds = [type(a) for a in actions]
    assert kinds.index(SaveReport) < kinds.index(Send)  # the turn is stored before the platform hears of it
    ended = shell.send(Finished(RecognitionOutcome(), 0.0, shell.now))
    assert of(EndCallRow, ended) == [EndCallRow("transfer", 0.0)]


def test_the_callers_stop_answers_the_message_then_closes_at_once():
    # No linger: the caller hung up, nothing is left to hear from it (a 2 s linger held its call slot).
    shell = Shell()
    shell.start()
    assert shell.send(CallStop("hangup")) == []
    actions = shell.message(final("你好 世界"))
    assert [e["event"] for e in sent(actions)] == ["transcript"]
    assert actions[-1] == Close(1000, "hangup", linger=False)


def test_the_callers_last_words_after_hanging_up_still_reach_the_flow():
    shell = Shell()
    shell.start(flow="claim_report")
    ended = shell.send(Finished(final("我 是 刘磊"), 1.0, 1.0))
    assert not of(Send, ended) and not of(Speak, ended)  # nobody to send to
    saves = of(SaveReport, ended)
    assert saves and any(t["speaker"] == "caller" and t["text"] == "我 是 刘磊" for t in saves[-1].transcript)
    assert saves[-1].status != "in_progress"  # whatever was filled, the report never stays in progress
    assert isinstance(ended[-2], EndCallRow) and ended[-1].event["type"] == "call.ended"


# --- protocol errors --------------------------------------------------------------------------
def test_a_protocol_error_closes_with_its_code_and_an_error_message():
    shell = Shell()
    shell.start()
    actions = shell.send(ProtocolError("bad audio: odd length", 1007))
    assert sent(actions)[-1] == {"event": "error", "message": "bad audio: odd length"}
    assert actions[-1] == Close(1007, "bad audio: odd length")
    assert shell.metrics.protocol_errors == 1
    assert of(EndCallRow, shell.send(Finished(RecognitionOutcome(), 0, 0))) == [
        EndCallRow("protocol error: bad audio: odd length", 0)]


def test_start_errors_and_their_close_codes():
    shell = Shell()
    assert shell.start(flow="no_such_flow")[-1].code == 1008
    shell = Shell()
    assert shell.start(flow="claim_report", started_at="yesterday")[-1].code == 1007
    shell = Shell()
    shell.start()
    assert shell.start()[-1] == Close(1008, "the call was already started")
    shell = Shell()
    actions = shell.core.handle(CallStarted(CallStart("c2", Encoding.PCM16, 8000), False, 0.0, WALL))
    assert isinstance(actions[-1], FlushAudio)
    assert shell.core.handle(Flushed(RecognitionOutcome()))[-1] == Close(1008, "missing or invalid API key")
    assert shell.metrics.calls_refused == {"auth": 1}
    shell = Shell()
    (open_audio,) = shell.core.handle(CallStarted(CallStart("c3", Encoding.PCM16, 8000), True, 0.0, WALL))
    assert isinstance(open_audio, OpenAudio)
    actions = shell.send(AudioOpened("rate 3 is too low"))
    assert actions[-1] == Close(1003, "unsupported audio format: rate 3 is too low")


def test_transcripts_are_published_stored_and_counted():
    shell = Shell()
    shell.start()
    actions = shell.message(final("你好 世界"), audio_s=1.0)
    assert [type(a) for a in actions] == [Send, Publish, StoreSegment]
    assert of(Publish, actions)[0].event | {"words": []} == {
        "call_id": "c1", "type": "transcript", "final": True, "text": "你好 世界", "start": 0.5, "end": 1.5,
        "confidence": 0.9, "words": []}
    assert shell.metrics.transcripts_final == 1 and shell.metrics.audio_seconds_decoded == 1.0


def test_a_request_takes_only_its_answer():
    shell = Shell()
    shell.core.handle(CallStarted(CallStart("c4", Encoding.PCM16, 8000), True, 0.0, WALL))  # OpenAudio waits
    with pytest.raises(TypeError):
        shell.core.handle(Tick(1.0))


# --- the audio's sample rate ---------------------------------------------------------------
def freeswitch_shell(metadata: dict, url_rate: str | None = None) -> Shell:
    from gateway.telephony.freeswitch import FreeswitchAdapter

    adapter = FreeswitchAdapter("fs-1", sample_rate=url_rate, module="audio_stream")
    shell = Shell(adapter)
    (start,) = adapter.receive_text(json.dumps(metadata))
    shell.start(start)
    return shell


def test_an_assumed_sample_rate_is_logged_and_counted(caplog):
    with caplog.at_level("WARNING", logger="gateway.calls.core"):
        freeswitch_shell({"callId": "fs-1"})
    assert freeswitch_shell({"callId": "fs-2", "sampleRate": 16000}).metrics.sample_rate_assumed == {}
    assert freeswitch_shell({"callId": "fs-3"}, url_rate="8000").metrics.sample_rate_assumed == {}
    assert [r.getMessage() for r in caplog.records] == ["call fs-1 on freeswitch: no sample rate given; assuming 8000 Hz"]
    metrics = Metrics()
    metrics.count_rate_assumed("freeswitch", 8000)
    assert 'gateway_sample_rate_assumed_total{protocol="freeswitch",rate="8000"} 1' in metrics.render(
        active_calls=0, max_calls=1, decode_lag=0.0)


def paced(shell: Shell, wall_s: float, audio_per_wall: float, step: float = 0.02) -> None:
    """Frames every `step` s of the fake clock, each carrying `audio_per_wall` times as much audio
    (at the rate the call was opened with): 2.0 is 16 kHz L16 read as 8 kHz."""
    for _ in range(round(wall_s / step)):
        shell.now += step
        shell.message(audio_s=step * audio_per_wall)


@pytest.mark.parametrize(("audio_per_wall", "flagged"), [(2.0, True), (1.0, False), (1.05, False), (0.5, False)])
def test_real_time_audio_that_runs_too_fast_for_its_rate_is_flagged_once(caplog, audio_per_wall, flagged):
    shell = freeswitch_shell({"callId": "fs-1"})
    with caplog.at_level("WARNING", logger="gateway.calls.core"):
        paced(shell, 8.0, audio_per_wall)
    warnings = [r.getMessage() for r in caplog.records if "faster than real time" in r.getMessage()]
    assert shell.metrics.sample_rate_mismatch == ({"freeswitch": 1} if flagged else {})
    assert len(warnings) == int(flagged)
    if flagged:
        assert "16000 Hz" in warnings[0] and "fs-1" in warnings[0]


def test_a_burst_of_buffered_audio_at_connect_is_no_mismatch():
    shell = freeswitch_shell({"callId": "fs-1"})
    shell.now += 0.05
    shell.message(audio_s=2.0)  # mod_audio_fork flushes what it buffered while connecting
    paced(shell, 6.0, 1.0)
    assert shell.metrics.sample_rate_mismatch == {}


def test_clients_that_send_faster_than_real_time_are_not_flagged():
    shell = Shell()  # /ws/call: files may be streamed as fast as the client likes
    shell.start()
    paced(shell, 6.0, 5.0)
    assert shell.metrics.sample_rate_mismatch == {}


def test_value_sources_say_how_the_caller_gave_them():
    """Typed (chat channel, generic `text` event): `text`; recognized: `speech` (keypad `dtmf`:
    tests/test_dialogue_engine.py)."""
    from gateway.storage.reports import json_schema

    def reported(*turns) -> dict:
        shell = Shell()
        shell.start(flow="claim_report")
        for turn in turns:
            if isinstance(turn, RecognitionOutcome):
                shell.message(turn, audio_s=1.0)
            else:
                shell.send(turn)
                shell.message()
        shell.send(Finished(RecognitionOutcome(), shell.position, shell.now))
        return of(SaveReport, shell.actions)[-1].details

    assert reported(TextIn("我叫刘磊"))["reporter_name"]["source"] == "text"
    assert reported(final("我叫刘磊"))["reporter_name"]["source"] == "speech"

    enum = json_schema()["properties"]["details"]["additionalProperties"]["properties"]["source"]["enum"]
    assert set(enum) == {"speech", "text", "dtmf", "record", "caller_id", "derived"}


def test_a_rejected_value_asked_again_is_listened_for_with_n_best_and_its_alternatives_reach_the_flow():
    from speech.results import Alternative

    shell = Shell()
    shell.start(flow="claim_report")
    answers = {"reporter_name": "亲 岳 叫 岳 燕", "insured_id_number": "身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三",
               "relationship": "是 我 父 亲", "insured_name": "我 父 亲 叫 蔡 金 凤", "incident_date": "前天",
               "incident_type": "出 了 意外 骨折", "hospital": "在 华西 医院", "reporter_phone": "就 用 这 个 号 码"}
    prompt = prompts(shell.actions)[-1]
    for _ in range(16):
        if prompt["slot"] == "confirm":
            break
        said = answers.get(prompt["slot"], "对") if not prompt["text"].endswith("对吗？") else "对"
        prompt = prompts(shell.message(final(said), audio_s=1.0))[-1]
    assert prompt["slot"] == "confirm" and prompt["slots"]["reporter_name"] == "岳燕"
    actions = shell.message(final("名 字 不 对"), audio_s=1.0)
    assert prompts(actions)[-1]["slot"] == "reporter_name"
    assert of(SetGrammar, actions)[-1].alternatives > 0 and of(SetGrammar, actions)[-1].phrases
    heard = Transcript("亲 岳 叫 岳 燕", True, confidence=0.9, start=0.5, end=1.5, alternatives=(
        Alternative("亲 岳 叫 岳 燕", 130.0), Alternative("亲 叶 叫 叶 艳", 129.5)))
    actions = shell.message(RecognitionOutcome(finals=[heard], audio_seconds=1.0), audio_s=1.0)
    assert prompts(actions)[-1]["slots"]["reporter_name"] == "叶艳"
    # once answered, the next question is listened for without them
    assert of(SetGrammar, actions)[-1].alternatives == 0


CONFIRM_ANSWERS = {
    "reporter_name": "亲 岳 叫 岳 燕",
    "insured_id_number": "身 份 证 号 是 五 一 零 一 零 七 一 九 九 九 零 六 二 三 二 六 四 三",
    "relationship": "是 我 父 亲", "insured_name": "我 父 亲 叫 蔡 金 凤", "incident_date": "前天",
    "incident_type": "出 了 意外 骨折", "hospital": "在 华西 医院", "reporter_phone": "就 用 这 个 号 码"}


def at_read_back(shell: Shell) -> dict:
    """A voice call answered up to the read-back; its read-back prompt."""
    shell.start(flow="claim_report")
    prompt = prompts(shell.actions)[-1]
    for _ in range(16):
        if prompt["slot"] == "confirm":
            return prompt
        said = CONFIRM_ANSWERS.get(prompt["slot"], "对") if not prompt["text"].endswith("对吗？") else "对"
        prompt = prompts(shell.message(final(said), audio_s=1.0))[-1]
    raise AssertionError(f"no read-back: {prompt}")


def test_a_bare_no_at_the_read_back_waits_for_the_rest_and_takes_both_as_one_answer():
    shell = Shell()
    assert at_read_back(shell)["slots"]["incident_date"]
    grammar = of(SetGrammar, shell.actions)[-1]
    # "不对" ends an utterance at the caller's pause: nothing is said yet, the grammar stays
    assert not prompts(shell.message(final("不 对"), audio_s=1.0))
    assert not prompts(shell.frames(0.3))
    partial = Transcript("医 院", False)
    assert not prompts(shell.message(None, audio_s=0.5, partial=partial))  # the caller goes on
    assert not prompts(shell.frames(1.0))  # still speaking: more than the hold, no answer yet
    actions = shell.message(final("医 院 是 协 和 医 院"), audio_s=1.0)
    # one answer: a correction of the hospital (heard without its vocabulary: asked again with it)
    assert of(SetGrammar, shell.actions[:-len(actions)])[-1] == grammar  # the rest heard as the read-back's
    (prompt,) = prompts(actions)
    assert prompt["slot"] == "hospital" and not prompt["text"].startswith("请问哪一项不对")
    assert any(turn.get("text") == "不 对 ，医 院 是 协 和 医 院" for turn in shell.core.flow.transcript)


def test_a_bare_no_with_nothing_after_it_is_answered_after_the_hold():
    shell = Shell()
    at_read_back(shell)
    assert not prompts(shell.message(final("不 对"), audio_s=1.0))
    actions = shell.frames(1.6)
    (prompt,) = prompts(actions)
    assert prompt["slot"] == "confirm" and prompt["text"].startswith("请问哪一项不对")


def test_a_held_no_is_answered_by_the_wall_clock_when_frames_stop():
    shell = Shell()
    at_read_back(shell)
    assert not prompts(shell.message(final("不 对"), audio_s=1.0))
    wait = shell.core.timeout(shell.now)
    assert 0 < wait <= 1.2 + 2.0 + 0.01  # the hold, and the wall clock's slack
    shell.now += wait
    (prompt,) = prompts(shell.send(Tick(shell.now)))
    assert prompt["text"].startswith("请问哪一项不对")


def test_only_a_bare_no_at_the_read_back_is_held():
    shell = Shell()
    at_read_back(shell)
    # a "no" that says what is wrong is answered at once
    (prompt,) = prompts(shell.message(final("电 话 不 对"), audio_s=1.0))
    assert prompt["slot"] == "reporter_phone"
    # and a "no" while collecting is an answer like any other
    shell = Shell()
    shell.start(flow="claim_report")
    assert prompts(shell.message(final("不 对"), audio_s=1.0))


def test_a_held_no_still_reaches_the_flow_when_the_caller_hangs_up():
    shell = Shell()
    at_read_back(shell)
    shell.message(final("不 对"), audio_s=1.0)
    shell.send(Finished(RecognitionOutcome(), shell.position, shell.now))
    (save,) = of(SaveReport, shell.actions)[-1:]
    assert save.status == "partial"
    assert any(turn.get("text") == "不 对" for turn in save.transcript if turn.get("speaker") == "caller")
