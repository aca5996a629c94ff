# A worker image, as deploy/helm/projector expects it, from any main package of this module
# (a projection worker built on package worker; by default the billing example):
# /usr/local/bin/worker (entrypoint, args ["worker"]) and /usr/local/bin/projectorctl (the chart's
# replay and rebuild Jobs), static binaries, user 65532, port 8080 (/healthz, /readyz, /metrics
# and the program's own handlers).
#
#   docker build -t registry.example.com/billing-worker:1.0.0 .
#   docker build --build-arg MAIN=./cmd/orders-worker -t registry.example.com/orders-worker:1.0.0 .
#
# MAIN is the main package to build, relative to the root of the module being built. A main on
# worker.Main skips the "worker" argument; a main with subcommands (billing) runs its worker
# subcommand with it. PROJECTORCTL is the projectorctl package: in a module of your own that
# requires this one, copy this file to its root and pass
# --build-arg PROJECTORCTL=github.com/projector-dev/projector/cmd/projectorctl (after
# `go get -tool github.com/projector-dev/projector/cmd/projectorctl`, so that it is in go.sum at the
# library's version). See docs/deploy.md.
# examples/billing/dockerfile_test.go checks this file and that the binaries build statically.

FROM golang:1.26 AS build
ARG MAIN=./examples/billing
ARG PROJECTORCTL=./cmd/projectorctl
# VERSION is stamped into both binaries (projectorctl version, --version, projector_build_info).
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0 GOOS=linux
RUN go build -trimpath -ldflags="-s -w -X github.com/projector-dev/projector/buildinfo.version=${VERSION}" -o /out/worker ${MAIN} && \
    go build -trimpath -ldflags="-s -w -X github.com/projector-dev/projector/buildinfo.version=${VERSION}" -o /out/projectorctl ${PROJECTORCTL}

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /usr/local/bin/worker
COPY --from=build /out/projectorctl /usr/local/bin/projectorctl
USER 65532:65532
EXPOSE 8080
ENV PROJECTOR_HTTP_ADDR=:8080
ENTRYPOINT ["/usr/local/bin/worker"]
CMD ["worker"]
