#!/usr/bin/env bash
# Start (or stop) a private InfluxDB 1.x and Redis on 127.0.0.1, free ports, in a temp dir.
#   source scripts/servers.sh; sf_servers_start DIR   -> exports SQUEEZEFLOW_TEST_INFLUX_URL,
#                                                       SQUEEZEFLOW_TEST_REDIS_URL, SF_SERVER_PIDS
#   sf_servers_stop                                  -> stops exactly the servers started here
# InfluxDB's ifql listener (:8082 on all interfaces by default), reporting and the internal
# monitor store are turned off; nothing listens beyond loopback.

sf_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

sf_wait_for() {  # sf_wait_for SECONDS CMD...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then return 1; fi
        sleep 0.1
    done
}

sf_servers_start() {
    local dir=$1
    mkdir -p "$dir/influx" "$dir/redis"
    local ihttp; ihttp=$(sf_free_port)
    local irpc; irpc=$(sf_free_port)
    local rport; rport=$(sf_free_port)
    cat >"$dir/influx/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:${irpc}"
[meta]
  dir = "$dir/influx/meta"
[data]
  dir = "$dir/influx/data"
  wal-dir = "$dir/influx/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${ihttp}"
  log-enabled = false
[ifql]
  enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
CONF
    influxd run -config "$dir/influx/influxdb.conf" >"$dir/influx/influxd.log" 2>&1 &
    SF_INFLUX_PID=$!
    redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --daemonize yes \
        --dir "$dir/redis" --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log"
    sf_wait_for 10 test -s "$dir/redis/redis.pid" || { echo "redis-server did not start" >&2; return 1; }
    SF_REDIS_PID=$(cat "$dir/redis/redis.pid")
    export SF_SERVER_PIDS="$SF_INFLUX_PID $SF_REDIS_PID"
    export SQUEEZEFLOW_TEST_INFLUX_URL="http://127.0.0.1:${ihttp}"
    export SQUEEZEFLOW_TEST_REDIS_URL="redis://127.0.0.1:${rport}/0"
    sf_wait_for 30 python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + \"/ping\", timeout=1)" "$SQUEEZEFLOW_TEST_INFLUX_URL" \
        || { echo "influxd did not answer /ping; log:" >&2; tail -20 "$dir/influx/influxd.log" >&2; return 1; }
    sf_wait_for 10 redis-cli -p "$rport" ping || { echo "redis did not answer PING" >&2; return 1; }
    echo "InfluxDB $SQUEEZEFLOW_TEST_INFLUX_URL (pid $SF_INFLUX_PID), Redis $SQUEEZEFLOW_TEST_REDIS_URL (pid $SF_REDIS_PID)"
}

sf_servers_stop() {
    local pid
    for pid in ${SF_SERVER_PIDS:-}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${SF_SERVER_PIDS:-}; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    SF_SERVER_PIDS=""
}
