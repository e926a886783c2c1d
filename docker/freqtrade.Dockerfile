# FreqTrade (with FreqUI) plus the squeezeflow package: SqueezeFlow imports feeder.* for its data.
FROM freqtradeorg/freqtrade:stable
COPY --chown=ftuser:ftuser pyproject.toml README.md /tmp/squeezeflow/
COPY --chown=ftuser:ftuser feeder /tmp/squeezeflow/feeder
RUN pip install --no-cache-dir --no-deps /tmp/squeezeflow && pip install --no-cache-dir "redis>=5"
