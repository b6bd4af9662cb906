GO ?= go

.PHONY: test test-short lint bench proto tidy-check run ci

# The README's test command: every package, real services, race detector.
test:
	$(GO) test -race ./...

# Unit tests only: skips tests that need PostgreSQL, Redis or real time.
test-short:
	$(GO) test -short ./...

lint:
	$(GO) vet ./...
	golangci-lint run ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Regenerate protobuf code (committed, so users need no protoc). Needs protoc
# (Debian: protobuf-compiler) and protoc-gen-go (go install
# google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
proto:
	@files=$$(git ls-files '*.proto'); \
	if [ -z "$$files" ]; then echo "no .proto files"; exit 0; fi; \
	protoc --go_out=. --go_opt=paths=source_relative $$files

tidy-check:
	$(GO) mod tidy -diff

run:
	$(GO) run ./examples/counter

ci:
	bash .ci/run
