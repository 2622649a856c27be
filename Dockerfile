# syntax=docker/dockerfile:1
# Builds switchboard-apiserver exactly as `make build` does (CGO_ENABLED=0,
# -trimpath, version from -ldflags) and ships it and switchboard-agent on
# distroless static, as a non-root user.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG GIT_VERSION=v0.0.0-dev
ARG GIT_COMMIT=unknown
ARG BUILD_DATE=1970-01-01T00:00:00Z
RUN make build GIT_VERSION="${GIT_VERSION}" GIT_COMMIT="${GIT_COMMIT}" GIT_TREE_STATE=clean BUILD_DATE="${BUILD_DATE}"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/_output/bin/switchboard-apiserver /usr/local/bin/switchboard-apiserver
# The agent of tunnelled members ships in the same image; its Deployment
# (artifacts/agent/member) runs it as the command.
COPY --from=build /src/_output/bin/switchboard-agent /usr/local/bin/switchboard-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/switchboard-apiserver"]
