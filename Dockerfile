# syntax=docker/dockerfile:1
#
# pod-identity-webhook: a static Go binary on distroless, running as non-root.
#
#   docker build -t pod-identity-webhook:dev --build-arg VERSION=v1.2.3 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/pod-identity-webhook:v1.2.3 \
#       --build-arg VERSION=v1.2.3 --push .
#
# The binary is `serve` by default (the upstream flags work as they are, see deploy/).

# The build stage runs on the builder's own platform and cross-compiles (CGO off), so
# multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# Printed by `pod-identity-webhook version` and sent as the User-Agent.
ARG VERSION=v0.0.0-dev
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X github.com/pod-identity-webhook/pod-identity-webhook/cli.Version=${VERSION}" \
      -o /out/pod-identity-webhook ./cmd/pod-identity-webhook

# No shell, no package manager; CA certificates and /etc/passwd with nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=v0.0.0-dev
LABEL org.opencontainers.image.title="pod-identity-webhook" \
      org.opencontainers.image.description="AWS IAM identity for Kubernetes pods, as policy (CEL + Rego)" \
      org.opencontainers.image.source="https://github.com/pod-identity-webhook/pod-identity-webhook" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/pod-identity-webhook /usr/local/bin/pod-identity-webhook
# Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 8443: TLS (/mutate, /healthz, /readyz) as deployed (the binary's default is 443);
# 9999: plain-HTTP /metrics, /healthz, /readyz.
EXPOSE 8443 9999
ENTRYPOINT ["/usr/local/bin/pod-identity-webhook"]
