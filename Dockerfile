# The feeder image: the squeezeflow package and its command line.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY feeder ./feeder
# gcc builds the C scanner of venue CSVs (optional: without it pyarrow reads them), then goes.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["squeezeflow-feeder"]
CMD ["--help"]
