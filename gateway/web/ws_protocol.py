"""uvicorn's websockets (sans-I/O) protocol with a read buffer of more than one message.

Why: the stock protocol pauses reading after every message and resumes when the app
takes it, two epoll changes per message. A Twilio call sends 50 messages a second, so
that churn was ~13% of the event loop's time under load. Here reading pauses only when
`MAX_QUEUED` messages wait for a call that is behind: back-pressure stays, the churn goes.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

MAX_QUEUED = 32  # 0.64 s of Twilio media frames


class BufferedWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        paused = self.read_paused
        self.read_paused = True  # keep the base class from pausing after this one message
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        if not self.read_paused and self.queue.qsize() >= MAX_QUEUED:
            self.read_paused = True
            self.transport.pause_reading()
