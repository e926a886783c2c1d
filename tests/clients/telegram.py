"""FreqTrade's real Telegram client, offline: a fake Bot API behind a TLS-terminating CONNECT proxy.

FreqTrade builds its bot with ``Application.builder().token(...)`` (fixed base URL
``https://api.telegram.org``); python-telegram-bot talks through httpx, which honours
``HTTPS_PROXY``, ``NO_PROXY`` and ``SSL_CERT_FILE``. So, with no change to FreqTrade:

- :class:`ConnectProxy` (127.0.0.1) accepts only ``CONNECT api.telegram.org:443``, answers every
  other CONNECT (FreqTrade's fiat converter asks for ``api.coingecko.com``) with 403 and counts
  it, terminates TLS with a certificate from a throwaway CA (``tls.make_test_ca``) and forwards the
  plaintext HTTP to
- :class:`BotApi` (127.0.0.1): the Bot API methods FreqTrade uses (``getMe``, ``deleteWebhook``,
  ``getUpdates`` long polling with queued user messages, ``sendMessage``, ``editMessageText``,
  ``answerCallbackQuery``), recording every call and message. Messages are checked like Telegram
  checks legacy Markdown (an unclosed ``*``, ``_`` or backtick is a 400 "can't parse entities",
  and the message is lost), unknown methods answer 404 and are listed.

Use :meth:`FakeTelegram.started` (or the ``telegram`` fixture in ``tests/conftest.py``) and put
:meth:`FakeTelegram.env` into the bot's environment::

    with FakeTelegram.started(tmp_path / "tg") as tg:
        bot = subprocess.Popen(cmd, env={**env, **tg.env()})
        tg.wait_for(lambda m: "flow feed stale" in m.text, timeout=60)
        reply = tg.ask("/balance", match="Starting capital")
        entries = tg.trade_notifications("entry")

A rehearsal (``squeezeflow-feeder rehearse --report FILE``) is checked the same way; the
rehearse process must hand ``FREQTRADE__TELEGRAM__*`` (and the proxy variables) on to the
FreqTrade it starts::

    def test_rehearsal_notifies(telegram, ...):
        r = subprocess.run([..., "rehearse", ..., "--report", str(report)],
                           env={**env, **telegram.env()})
        check_trade_notifications(telegram, json.loads(report.read_text())["live_trades"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tests.clients.tls import TestCA, make_test_ca

TELEGRAM_HOST = "api.telegram.org"


# ----- messages --------------------------------------------------------------------------------
@dataclass
class SentMessage:
    message_id: int
    chat_id: str
    text: str
    parse_mode: str | None
    at: float  # time.monotonic() when the fake server accepted it
    method: str = "sendMessage"
    reply_markup: Any = None


@dataclass
class Delivered:
    update_id: int
    text: str
    at: float | None = None  # when getUpdates handed it to the bot


@dataclass
class TradeNotice:
    """One of FreqTrade's trade notifications, parsed from its Telegram text."""

    kind: str  # entry | entry_fill | exit | exit_fill
    trade_id: int
    pair: str
    direction: str  # Long | Short
    enter_tag: str | None
    exit_reason: str | None
    text: str


_ENTRY = re.compile(
    r"\*[^*]+:\* (?P<w>New Trade filled|New Trade|Increasing position|Position increase filled)"
    r" \(#(?P<id>\d+)\)\n\*Pair:\* `(?P<pair>[^`]+)`"
)
_EXIT = re.compile(
    r"\*[^*]+:\* (?P<w>Exited|Exiting|Partially exited|Partially exiting) (?P<pair>\S+)"
    r" \(#(?P<id>\d+)\)"
)
_FIELD = re.compile(r"\*(?P<k>Enter Tag|Exit Reason|Direction):\* `(?P<v>[^`]*)`")


def parse_trade_notice(text: str) -> TradeNotice | None:
    """Entry/exit notification -> TradeNotice; any other message -> None."""
    fields = {m["k"]: m["v"] for m in _FIELD.finditer(text)}
    direction = fields.get("Direction", "").split(" ")[0]
    if m := _ENTRY.search(text):
        kind = "entry_fill" if m["w"].endswith("filled") else "entry"
        return TradeNotice(
            kind, int(m["id"]), m["pair"], direction, fields.get("Enter Tag"), None, text
        )
    if m := _EXIT.search(text):
        kind = "exit_fill" if m["w"].endswith("exited") or m["w"] == "Exited" else "exit"
        return TradeNotice(
            kind,
            int(m["id"]),
            m["pair"],
            direction,
            fields.get("Enter Tag"),
            fields.get("Exit Reason"),
            text,
        )
    return None


def markdown_error(text: str) -> str | None:
    """Telegram's legacy Markdown check: an entity opened and never closed is refused."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            i += 2
            continue
        closer = "```" if text.startswith("```", i) else c if c in "*_`" else None
        if closer is None:
            i += 1
            continue
        j = text.find(closer, i + len(closer))
        if j < 0:
            offset = len(text[:i].encode())
            return f"Bad Request: can't parse entities: Can't find end of the entity starting at byte offset {offset}"  # noqa: E501
        i = j + len(closer)
    return None


# ----- the fake Bot API --------------------------------------------------------------------------
class BotApi:
    """Telegram's Bot API over plain HTTP/1.1 on 127.0.0.1 (the proxy adds the TLS)."""

    HOLD_S = 1.0  # longest a getUpdates long poll is held (Telegram may answer early)

    def __init__(self, token: str, chat_id: int) -> None:
        self.token = token
        self.chat_id = chat_id
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: list[SentMessage] = []
        self.rejected: list[tuple[SentMessage, str]] = []
        self.unknown: list[str] = []
        self.bad_token = 0
        self.delivered: list[Delivered] = []
        self._pending: list[dict[str, Any]] = []
        self._next_update = 500_000 + secrets.randbelow(1000)
        self._next_message = 1
        self._new_update: asyncio.Event | None = None
        self.changed = threading.Condition()
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._new_update = asyncio.Event()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # called on the loop thread
    def enqueue(self, text: str) -> Delivered:
        uid = self._next_update
        self._next_update += 1
        self._next_message += 1
        msg: dict[str, Any] = {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": {"id": self.chat_id, "type": "private", "first_name": "Tester"},
            "from": {"id": self.chat_id, "is_bot": False, "first_name": "Tester"},
            "text": text,
        }
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        self._pending.append({"update_id": uid, "message": msg})
        d = Delivered(uid, text)
        self.delivered.append(d)
        assert self._new_update is not None
        self._new_update.set()
        return d

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int((await reader.readline()).strip().split(b";")[0], 16)
                        chunk = await reader.readexactly(size + 2)
                        if size == 0:
                            break
                        body += chunk[:-2]
                status, payload = await self._dispatch(method, target, headers, body)
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                    "Connection: keep-alive\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    @staticmethod
    def _params(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        ctype = headers.get("content-type", "")
        if not body:
            return {}
        if ctype.startswith("application/json"):
            out: dict[str, Any] = json.loads(body)
            return out
        if ctype.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(body.decode(), keep_blank_values=True))
        raise ValueError(f"unsupported request body type {ctype!r}")

    async def _dispatch(
        self, verb: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        m = re.fullmatch(r"/bot(?P<token>[^/]+)/(?P<method>\w+)", target.split("?")[0])
        if not m:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if m["token"] != self.token:
            self.bad_token += 1
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        name = m["method"]
        try:
            params = self._params(headers, body)
        except ValueError as e:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {e}"}
        self.calls.append((name, params))
        try:
            handler = getattr(self, f"_m_{name.lower()}", None)
            if handler is None:
                self.unknown.append(name)
                return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            result = await handler(params)
            if isinstance(result, tuple):
                return result
            return 200, {"ok": True, "result": result}
        finally:
            self._notify()

    async def _m_getme(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(self.token.split(":")[0]),
            "is_bot": True,
            "first_name": "SqueezeFlow",
            "username": "squeezeflow_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_deletewebhook(self, p: dict[str, Any]) -> bool:
        if str(p.get("drop_pending_updates", "false")).lower() == "true":
            self._pending.clear()  # what Telegram does: those updates are never delivered
        return True

    async def _m_getupdates(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        hold = min(float(p.get("timeout") or 0), self.HOLD_S)
        assert self._new_update is not None
        self._pending = [u for u in self._pending if u["update_id"] >= offset]  # confirmed
        if not self._pending and hold > 0:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), hold)
        out = self._pending[:limit]
        now = time.monotonic()
        for u in out:
            for d in self.delivered:
                if d.update_id == u["update_id"] and d.at is None:
                    d.at = now
        return out

    def _message(self, p: dict[str, Any], method: str) -> SentMessage:
        markup = p.get("reply_markup")
        if isinstance(markup, str) and markup:
            markup = json.loads(markup)
        self._next_message += 1
        return SentMessage(
            self._next_message,
            str(p.get("chat_id")),
            str(p.get("text", "")),
            p.get("parse_mode"),
            time.monotonic(),
            method,
            markup,
        )

    def _result(self, sm: SentMessage) -> dict[str, Any]:
        return {
            "message_id": sm.message_id,
            "date": int(time.time()),
            "text": sm.text,
            "chat": {"id": int(sm.chat_id), "type": "private", "first_name": "Tester"},
            "from": {
                "id": int(self.token.split(":")[0]),
                "is_bot": True,
                "first_name": "SqueezeFlow",
            },
        }

    async def _send(self, p: dict[str, Any], method: str) -> Any:
        sm = self._message(p, method)
        if sm.chat_id != str(self.chat_id):
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: chat not found",
            }  # noqa: E501
        if (sm.parse_mode or "").lower() == "markdown" and (err := markdown_error(sm.text)):
            self.rejected.append((sm, err))
            return 400, {"ok": False, "error_code": 400, "description": err}
        if not sm.text.strip():
            self.rejected.append((sm, "message text is empty"))
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }  # noqa: E501
        self.messages.append(sm)
        return self._result(sm)

    async def _m_sendmessage(self, p: dict[str, Any]) -> Any:
        return await self._send(p, "sendMessage")

    async def _m_editmessagetext(self, p: dict[str, Any]) -> Any:
        return await self._send(p, "editMessageText")

    async def _m_answercallbackquery(self, p: dict[str, Any]) -> bool:
        return True


# ----- the CONNECT proxy -------------------------------------------------------------------------
class ConnectProxy:
    """HTTPS proxy on 127.0.0.1: CONNECT to an allowed host:port is answered by terminating TLS
    with the test CA's certificate and piping the plaintext to that host's loopback upstream;
    every other CONNECT (and any non-CONNECT request) gets 403 and is counted in ``refused``."""

    def __init__(self, ca: TestCA, upstreams: dict[str, tuple[str, int]]) -> None:
        self.ca = ca
        self.upstreams = upstreams  # "host:port" -> (127.0.0.1, port)
        self.refused: list[str] = []
        self.tunnels: list[str] = []
        self.tls_errors: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._ctx = ca.server_context()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        parts = head.split("\r\n", 1)[0].split(" ")
        target = parts[1] if len(parts) > 1 else "?"
        if parts[0] != "CONNECT" or target not in self.upstreams:
            self.refused.append(f"{parts[0]} {target}")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await writer.start_tls(self._ctx)
        except (OSError, ConnectionError) as e:  # ssl.SSLError is an OSError
            self.tls_errors.append(f"{target}: {e}")
            writer.close()
            return
        self.tunnels.append(target)
        up_r, up_w = await asyncio.open_connection(*self.upstreams[target])

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))


# ----- both together, on a background event loop -------------------------------------------------
@dataclass
class FakeTelegram:
    api: BotApi
    proxy: ConnectProxy
    ca: TestCA
    loop: asyncio.AbstractEventLoop
    token: str = ""
    chat_id: int = 0
    _thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    @contextlib.contextmanager
    def started(cls, folder: Path) -> Iterator[FakeTelegram]:
        ca = make_test_ca(folder, (TELEGRAM_HOST,))
        token = f"{secrets.randbelow(10**9) + 10**9}:AA{secrets.token_urlsafe(24)}"
        chat_id = secrets.randbelow(10**9) + 10**8
        api = BotApi(token, chat_id)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-telegram", daemon=True)
        thread.start()
        proxy: ConnectProxy | None = None

        def run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

        try:
            run(api.start())
            proxy = ConnectProxy(ca, {f"{TELEGRAM_HOST}:443": ("127.0.0.1", api.port)})
            run(proxy.start())
            yield cls(api, proxy, ca, loop, token, chat_id, thread)
        finally:
            if proxy is not None:
                run(proxy.stop())
            run(api.stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def env(self) -> dict[str, str]:
        """What FreqTrade's environment needs: proxy, trust store, and Telegram on."""
        proxy = f"http://127.0.0.1:{self.proxy.port}"
        return {
            "HTTPS_PROXY": proxy,
            "https_proxy": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "SSL_CERT_FILE": str(self.ca.ca_cert),
            "FREQTRADE__TELEGRAM__ENABLED": "true",
            "FREQTRADE__TELEGRAM__TOKEN": self.token,
            "FREQTRADE__TELEGRAM__CHAT_ID": str(self.chat_id),
        }

    # ----- observing ----------------------------------------------------------------------------
    @property
    def messages(self) -> list[SentMessage]:
        return list(self.api.messages)

    def texts(self) -> list[str]:
        return [m.text for m in self.api.messages]

    def polls(self) -> int:
        return sum(1 for name, _ in self.api.calls if name == "getUpdates")

    def wait_until(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait (on the server's change notifications) until ``cond()`` is truthy; fail naming
        ``what`` and showing the messages so far."""
        deadline = time.monotonic() + timeout
        with self.api.changed:
            while not (got := cond()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:.0f}s waiting for {what}; calls "
                        f"{[c for c, _ in self.api.calls][-20:]}; messages {self.texts()}"
                    )
                self.api.changed.wait(min(left, 0.5))
        return got

    def wait_for(
        self,
        pred: Callable[[SentMessage], bool],
        timeout: float = 60,
        after: float = 0.0,
        what: str = "a message",
    ) -> SentMessage:
        """The first accepted message (sent after monotonic time ``after``) matching ``pred``."""

        def find() -> SentMessage | None:
            return next((m for m in self.messages if m.at >= after and pred(m)), None)

        got: SentMessage = self.wait_until(find, timeout, what)
        return got

    def ask(self, text: str, match: str, timeout: float = 60) -> SentMessage:
        """Send ``text`` as the configured user (through getUpdates) once the bot polls, and wait
        for the bot's answer containing regex ``match``, sent after the bot fetched the update."""
        self.wait_until(lambda: self.polls() > 0, timeout, "the bot's first getUpdates")
        d: Delivered = asyncio.run_coroutine_threadsafe(self._enqueue(text), self.loop).result(10)
        self.wait_until(lambda: d.at is not None, timeout, f"the bot to fetch {text!r}")
        assert d.at is not None
        return self.wait_for(
            lambda m: re.search(match, m.text) is not None,
            timeout,
            d.at,
            f"an answer to {text!r} matching {match!r}",
        )

    async def _enqueue(self, text: str) -> Delivered:
        return self.api.enqueue(text)

    def trade_notifications(self, kind: str | None = None) -> list[TradeNotice]:
        """FreqTrade's entry/exit notifications received so far (``kind``: entry, entry_fill,
        exit, exit_fill; FreqTrade's defaults send entry, exit and exit_fill)."""
        out = [n for m in self.messages if (n := parse_trade_notice(m.text))]
        return [n for n in out if kind is None or n.kind == kind]


def _key(trade: dict[str, Any], *names: str) -> Any:
    return next((trade[n] for n in names if trade.get(n) is not None), None)


def check_trade_notifications(
    tg: FakeTelegram, live_trades: list[dict[str, Any]], timeout: float = 60
) -> None:
    """Every live trade (e.g. ``rehearse``'s report ``live_trades``: dicts with ``pair``,
    ``direction``, ``entry_tag``/``enter_tag``, ``exit_reason``, ``exit_candle``; a trade still
    open has ``exit_candle`` None or ``exit_reason`` None/"open_at_end") got FreqTrade's entry
    notification and, once closed, its exit-fill notification, through Telegram; no notification
    for a trade that does not exist. Waits for them (up to ``timeout``) and fails listing what
    arrived."""

    def is_open(t: dict[str, Any]) -> bool:
        return t.get("exit_reason") in (None, "open_at_end") or (
            "exit_candle" in t and t["exit_candle"] is None
        )

    def want(kind: str) -> list[tuple[str, str, str | None]]:
        out = []
        for t in live_trades:
            reason = _key(t, "exit_reason")
            if kind == "exit_fill" and is_open(t):
                continue
            extra = _key(t, "entry_tag", "enter_tag") if kind == "entry" else reason
            out.append((str(t["pair"]), str(t["direction"]).lower(), extra))
        return sorted(out, key=repr)

    def got(kind: str) -> list[tuple[str, str, str | None]]:
        out = [
            (n.pair, n.direction.lower(), n.enter_tag if kind == "entry" else n.exit_reason)
            for n in tg.trade_notifications(kind)
        ]
        return sorted(out, key=repr)

    expected = {k: want(k) for k in ("entry", "exit_fill")}
    try:
        tg.wait_until(
            lambda: all(len(got(k)) >= len(v) for k, v in expected.items()),
            timeout,
            f"{len(expected['entry'])} entry and {len(expected['exit_fill'])} exit-fill "
            "notifications",
        )
    finally:
        for kind, exp in expected.items():
            assert got(kind) == exp, f"{kind} notifications {got(kind)} != trades {exp}"
