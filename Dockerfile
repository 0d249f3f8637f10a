# syntax=docker/dockerfile:1
# Earpiece: one image for `earpiece gateway`, `earpiece worker` and `earpiece migrate`.
# docker-compose.yml builds it; the command picks the role.

# --- build: install the project and its dependencies into a virtualenv -------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY workflows ./workflows
COPY migrations ./migrations
# The migration runner looks for migrations/ beside the installed `services` package (it resolves
# the repository root from its own path, and migrations/ is not package data): put the SQL files
# where it looks, and fail the build if it cannot find them. (`python -P`: import the installed
# package, not the source tree in the working directory.)
RUN pip install . \
    && cp -r migrations "$(python -P -c 'import pathlib, services; print(pathlib.Path(services.__file__).resolve().parents[1])')/" \
    && python -P -c 'from services.store.migrations import discover; assert discover(), "no migrations found"'

# --- runtime: the virtualenv only, run as an unprivileged user -----------------------------------
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin earpiece
COPY --from=build /opt/venv /opt/venv

# The default state folder is beside the installed sources, which this user cannot write; with
# DATABASE_URL and TEMPORAL_ADDRESS set nothing embedded starts, but keep any state writable.
# Inside a container the gateway must listen beyond loopback for a published port to reach it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    EARPIECE_STATE_DIR=/home/earpiece/state \
    EARPIECE_GRPC_ADDRESS=0.0.0.0:50051

USER earpiece
WORKDIR /home/earpiece
EXPOSE 50051

ENTRYPOINT ["earpiece"]
CMD ["gateway"]
