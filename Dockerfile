# cse-backup-bot container image.
#
#   docker build -t cse-backup-bot .
#   docker run --env-file .env -p 3000:3000 cse-backup-bot          # `run` (the default)
#   docker run --env-file .env cse-backup-bot check                  # reach every dependency
#   docker run --rm cse-backup-bot preview "0 2 * * *" --tz Asia/Singapore
#
# Build stage: a virtual environment with the bot and its runtime dependencies only (no test
# extra), so the final stage needs no compiler, no pip cache and no source tree.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install --no-cache-dir .

# Final stage: the same base image (the venv's interpreter links to it), the venv, a non-root user.
FROM python:3.11-slim

RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin bot

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PORT=3000
USER 10001:10001
EXPOSE 3000

# The slim image has no curl; the interpreter is enough. /healthz answers while the process
# lives; readiness (/readyz) is for orchestrators that route traffic, not for restarts.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=4)" || exit 1

ENTRYPOINT ["cse-backup-bot"]
CMD ["run"]
