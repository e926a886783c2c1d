# The feeder image: the squeezeflow package and its command line.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY feeder ./feeder
RUN pip install --no-cache-dir .
ENTRYPOINT ["squeezeflow-feeder"]
CMD ["--help"]
