# tokenpool daemon image: slim, non-root, health-checked over grpc.health.v1.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY clients/python clients/python
COPY tokenpool tokenpool
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt \
        ./clients/python '.[fast]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/tokenpool tokenpool
COPY --from=build /install /usr/local
USER tokenpool
WORKDIR /var/lib/tokenpool
# gRPC API, Prometheus scrape endpoint.
EXPOSE 50051 9464
# Under [server.tls] set TOKENPOOL_TLS_CA (and TOKENPOOL_TLS_SERVER_NAME, and
# for mutual TLS TOKENPOOL_TLS_CERT / TOKENPOOL_TLS_KEY) in the container: the
# check reads them like every tokenpool client command (docs/deploy.md).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tokenpool", "health", "--address", "127.0.0.1:50051"]
# The default command reads /etc/tokenpool/tokenpool.toml: mount one there.
ENTRYPOINT ["tokenpool", "serve"]
CMD ["--config", "/etc/tokenpool/tokenpool.toml"]
