# The gateway image: `coach-gateway serve` by default (see docker-compose.yml).
# Build with voice support (faster-whisper, piper, edge-tts) by passing --build-arg EXTRAS=voice.
FROM python:3.11-slim AS build
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY streams ./streams
COPY providers ./providers
COPY assess ./assess
COPY db ./db
COPY loadtests ./loadtests
RUN pip install --no-cache-dir --prefix=/install ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 coach
COPY --from=build /install /usr/local
USER coach
ENV PYTHONUNBUFFERED=1 \
    COACH_HOST=0.0.0.0 \
    COACH_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
STOPSIGNAL SIGTERM
CMD ["coach-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
