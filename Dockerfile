# syntax=docker/dockerfile:1
# The slugway image: one static binary, run as `/slugway controller ...` or
# `/slugway proxy ...` (the Helm chart and config/ pass the subcommand as args).
#   make docker-build IMG=slugway:dev
# test/helm/docker_test.go runs this file's `go build` line and checks that the
# binary is static, since no Docker engine is available to the tests.

ARG GO_VERSION=1.26

# ---- build: compile for the target platform, without cgo ----
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/slugway .

# ---- final: nothing but the binary and the CA roots, as a non-root user ----
# The same contents as a distroless "static:nonroot" image, built from scratch.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/slugway /slugway
# 65532 is "nonroot" in distroless images; the chart also sets runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/slugway"]
