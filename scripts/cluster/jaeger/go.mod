// Builds Jaeger v2, the OpenTelemetry-collector-based `jaeger` binary of the umbrella chart's
// tracing (charts/flotilla/templates/tracing.yaml) and of the tests' loopback Jaeger
// (tests/support/jaeger.py). Its module's releases are tagged v1.x: v1.75.0's cmd/jaeger is
// Jaeger v2. Written with `go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0`;
// scripts/cluster/build.sh resolves the rest (go mod tidy) in a copy outside the repository.
// The replace is Jaeger's own (its go.mod), which a module requiring it does not inherit.
module flotilla.dev/cluster/jaeger

go 1.26.0

tool github.com/jaegertracing/jaeger/cmd/jaeger

require github.com/jaegertracing/jaeger v1.75.0

replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
