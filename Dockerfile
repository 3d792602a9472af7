# The dialer-stats image: worker, API, simulator and CLI (production talks to Apache Kafka
# and Redis, so the embedded extra is not installed).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY processors ./processors
COPY api ./api
COPY bench ./bench
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["dialer-stats"]
