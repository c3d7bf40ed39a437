# gvd serve in a container: slim Python, the [serve,formats] extras only (no TensorFlow: retraining
# is reported as off), a non-root user, data in /data, a health check.
#   docker build -t gvd-serve .
#   docker run --rm -p 127.0.0.1:8000:8000 -v gvd-data:/data -e GVD_ADMIN_TOKEN=... gvd-serve
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY train ./train
COPY export ./export
COPY models ./models
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[serve,formats]"

FROM python:3.11-slim
RUN useradd --create-home --no-log-init --uid 10001 gvd \
    && mkdir /data \
    && chown gvd:gvd /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "gvd[serve,formats]==0.1.0" \
    && rm -rf /wheels
USER 10001
ENV XDG_DATA_HOME=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# 0.0.0.0 inside the container so that the published port reaches it; publish it on 127.0.0.1 (above)
# or put a reverse proxy in front, and see docs/serving.md for --allow-host / --allow-origin.
CMD ["gvd", "serve", "--host", "0.0.0.0", "--port", "8000"]
