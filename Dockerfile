# filedrop as a container: `filedrop watch` on /inbox by default, `filedrop run` for CronJobs.
#   docker build -t filedrop .
#   docker run -v "$PWD/inbox:/inbox" -v filedrop-journal:/var/lib/filedrop -e FILEDROP_ENV=staging -e FILEDROP_CLIENT_ID=... \
#     -e FILEDROP_ORG_ID=... -e FILEDROP_CLIENT_SECRET_FILE=/run/secrets/amili \
#     -v "$PWD/amili-secret:/run/secrets/amili:ro" filedrop
FROM docker.io/library/python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml, so code changes do not reinstall them; with the
# PostgreSQL driver, so replicas can share a journal. The stand-in package holds a version,
# which pyproject.toml reads from filedrop/__init__.py.
COPY pyproject.toml README.md ./
RUN mkdir filedrop && echo '__version__ = "0"' > filedrop/__init__.py \
    && pip install ".[postgres]" \
    && pip uninstall -y filedrop \
    && rm -rf filedrop build *.egg-info

COPY filedrop ./filedrop
COPY mappings ./mappings
COPY inbox-example ./inbox-example
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && useradd --create-home --uid 10001 --user-group filedrop \
    && mkdir -p /inbox /var/lib/filedrop \
    && chown filedrop:filedrop /inbox /var/lib/filedrop

USER filedrop

# The journal lives on a volume of its own, never in /inbox: anyone who can drop a file could
# delete it there, and a share's locking is not safe for SQLite. A journal an older image kept in
# /inbox/.filedrop/state.db is moved here at the first start.
# Secrets come as files (Docker/Kubernetes secrets): FILEDROP_CLIENT_SECRET_FILE.
ENV FILEDROP_INBOX=/inbox \
    FILEDROP_MAPPING=/app/mappings \
    FILEDROP_STATE=/var/lib/filedrop/journal.db \
    FILEDROP_LOG_FORMAT=json
VOLUME ["/inbox", "/var/lib/filedrop"]

# Health from the daemon itself: /healthz answers 200 while its main loop runs (/readyz also
# checks the journal, the inbox and the token; /metrics is for Prometheus). `status --health`
# asks it, and trusts only an answer carrying the token this container's daemon wrote, so on a
# host network another container's daemon on the same port never makes this one look healthy.
ENV FILEDROP_METRICS_PORT=9100 \
    FILEDROP_METRICS_HOST=0.0.0.0
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["filedrop", "status", "--health"]

# SIGTERM: stop taking files, leave in-flight work resumable, exit 0 within 10 s.
STOPSIGNAL SIGTERM
CMD ["filedrop", "watch"]
