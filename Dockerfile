# Image for every Boxoffice process of docker-compose.yml (untested here: no Docker).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY read_api read_api
COPY infra infra
RUN pip install --no-cache-dir .
USER nobody
