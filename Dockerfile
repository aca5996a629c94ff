# The worker image of the billing example, as deploy/helm/projector expects it:
# /usr/local/bin/billing (entrypoint, args ["worker"]) and /usr/local/bin/projectorctl,
# static binaries, user 65532, port 8080 (/healthz, /readyz, /metrics, /api/v1/...).
#
#   docker build -t ghcr.io/projector-dev/projector-billing:dev .
#
# examples/billing/dockerfile_test.go checks this file and that both binaries build statically.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOOS=linux
RUN go build -trimpath -ldflags="-s -w" -o /out/billing ./examples/billing && \
    go build -trimpath -ldflags="-s -w" -o /out/projectorctl ./cmd/projectorctl

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/billing /usr/local/bin/billing
COPY --from=build /out/projectorctl /usr/local/bin/projectorctl
USER 65532:65532
EXPOSE 8080
ENV PROJECTOR_HTTP_ADDR=:8080
ENTRYPOINT ["/usr/local/bin/billing"]
CMD ["worker"]
