# Static binary on distroless: no shell, no package manager, nothing to patch
# but gatekeeper itself. modernc.org/sqlite is pure Go, so CGO stays off.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# gatekeeper --version prints VERSION: docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /gatekeeper ./cmd/gatekeeper
# The SQLite warehouse lives in /data, writable by the nonroot user.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /gatekeeper /gatekeeper
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/gatekeeper"]
CMD ["serve"]
