"""The feeder's ``/health`` (JSON) and ``/metrics`` (Prometheus text) and their HTTP server."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from feeder.redact import redact

if TYPE_CHECKING:
    from feeder.live.runtime import Feeder

log = logging.getLogger(__name__)


def health(feeder: Feeder) -> dict[str, Any]:
    """What ``/health`` answers: status (ok, degraded, failing), streams, markets, queues."""
    now = time.time()
    streams = {}
    for c in feeder.collectors:
        streams[c.name] = {
            "connected": c.stats.connected_since is not None,
            "reconnects": c.stats.reconnects,
            "watchdog_reconnects": c.stats.watchdog_reconnects,
            "backfilled_trades": c.stats.backfilled_trades,
            "unfilled_gaps": c.stats.unfilled_gaps,
            "last_error": c.stats.last_error,
        }
    markets = {
        k: {
            "last_trade_age_s": round(now - rt.last_trade_recv, 3) if rt.last_trade_recv else None,
            "watermark": rt.builder.watermark,
            "trades": rt.trades,
            "held": rt.hold_ms() is not None,
        }
        for k, rt in feeder.markets.items()
    }
    up = all(s["connected"] for s in streams.values()) and feeder.stats.store_up
    failing = feeder.fatal or feeder.writer.failure
    refused = feeder.writer.refused and f"store refused points: {feeder.writer.refused}"
    alerts = [a for a in (failing, feeder.writer.alert, refused, feeder.writer.refused_alert) if a]
    return {
        "status": "failing" if alerts else "ok" if up else "degraded",
        "fatal": failing,
        "alerts": alerts,
        "task_restarts": dict(feeder.task_restarts),
        "streams": streams,
        "markets": markets,
        "queues": {
            "store": {"size": feeder.writer.queue.qsize(), "max": feeder.writer.queue.maxsize},
            "redis": feeder.publisher.depth() if feeder.publisher else None,
        },
        "spool": {
            "batches": len(feeder.writer.spool),
            "bytes": feeder.writer.spool.bytes,
            "quarantined": feeder.writer.spool.quarantined,
        },
        "store_up": feeder.stats.store_up,
        "redis_up": feeder.stats.redis_up,
        "gaps": feeder.gaps[-100:],
        "rejects": dict(feeder.rejects.counts),
        "counters": dict(feeder.counters) | dict(feeder.stats.counters),
    }


def metrics(feeder: Feeder) -> str:
    """What ``/metrics`` answers (Prometheus text format)."""
    h = health(feeder)
    lines = [
        "# HELP squeezeflow_trades_total Trades received, by path.",
        "# TYPE squeezeflow_trades_total counter",
    ]
    for k in ("trades_live", "trades_backfilled"):
        lines.append(f'squeezeflow_trades_total{{path="{k[7:]}"}} {feeder.counters[k]}')
    lines += [
        "# HELP squeezeflow_rejected_total Trades refused, by reason.",
        "# TYPE squeezeflow_rejected_total counter",
    ]
    for reason, n in sorted(feeder.rejects.counts.items()):
        lines.append(f'squeezeflow_rejected_total{{reason="{reason}"}} {n}')
    lines += [
        "# HELP squeezeflow_last_trade_age_seconds Seconds since the last trade.",
        "# TYPE squeezeflow_last_trade_age_seconds gauge",
    ]
    for k, v in h["markets"].items():
        if v["last_trade_age_s"] is not None:
            lines.append(
                f'squeezeflow_last_trade_age_seconds{{market="{k}"}} {v["last_trade_age_s"]}'
            )
    lines += [
        "# HELP squeezeflow_liquidations_total Liquidation fills received (lbuy/lsell).",
        "# TYPE squeezeflow_liquidations_total counter",
        f"squeezeflow_liquidations_total {feeder.counters['liquidations']}",
        "# HELP squeezeflow_open_interest_total Open-interest points polled, by outcome.",
        "# TYPE squeezeflow_open_interest_total counter",
        f'squeezeflow_open_interest_total{{outcome="stored"}} {feeder.counters["oi_points"]}',
        f'squeezeflow_open_interest_total{{outcome="error"}} {feeder.counters["oi_errors"]}',
    ]
    lines += ["# TYPE squeezeflow_reconnects_total counter"]
    for k, v in h["streams"].items():
        lines.append(f'squeezeflow_reconnects_total{{stream="{k}"}} {v["reconnects"]}')
    redis_depth = h["queues"]["redis"]["size"] if h["queues"]["redis"] else 0
    lines += [
        "# TYPE squeezeflow_queue_depth gauge",
        f'squeezeflow_queue_depth{{queue="store"}} {h["queues"]["store"]["size"]}',
        f'squeezeflow_queue_depth{{queue="redis"}} {redis_depth}',
        "# TYPE squeezeflow_spool_batches gauge",
        f"squeezeflow_spool_batches {h['spool']['batches']}",
        "# TYPE squeezeflow_gaps_total counter",
        f"squeezeflow_gaps_total {len(feeder.gaps)}",
        "# TYPE squeezeflow_store_up gauge",
        f"squeezeflow_store_up {int(feeder.stats.store_up)}",
        "# TYPE squeezeflow_redis_up gauge",
        f"squeezeflow_redis_up {int(feeder.stats.redis_up)}",
    ]
    return "\n".join(lines) + "\n"


async def serve(feeder: Feeder) -> tuple[web.AppRunner, int]:
    """Serve ``/health`` and ``/metrics`` on the configured host and port; returns the runner
    and the port (the one the system chose when the configured port is 0)."""

    async def get_health(_: web.Request) -> web.Response:
        return web.json_response(health(feeder), dumps=lambda d: redact(json.dumps(d)))

    async def get_metrics(_: web.Request) -> web.Response:
        text = redact(metrics(feeder))
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/health", get_health)
    app.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    fs = feeder.settings.feeder
    site = web.TCPSite(runner, fs.http_host, fs.http_port)
    await site.start()
    port = int(runner.addresses[0][1]) if runner.addresses else fs.http_port
    log.info("health on http://%s:%s/health and /metrics", fs.http_host, port)
    return runner, port
