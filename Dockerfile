# The compose stack's `app`: the otel-resilience demo, sending OTLP to the collector
# (OTEL_EXPORTER_OTLP_ENDPOINT, set in docker-compose.yml) and serving the Prometheus pull endpoint.
FROM python:3.11.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[demo]" && useradd --system --no-create-home app

USER app
EXPOSE 9464 9465
ENTRYPOINT ["otel-resilience"]
CMD ["demo", "--duration", "0", "--metrics-host", "0.0.0.0", "--plain"]
