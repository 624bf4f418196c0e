// Wrapper module: builds the real Dapr CLI (github.com/dapr/cli, package main at the module root)
// with `go build github.com/dapr/cli`. `go install github.com/dapr/cli@v1.16.5` is not usable here:
// the proxy refuses github.com/dapr/cli/@v/list (403), which `go install pkg@version` reads.
module pysentry.test/daprcli

go 1.24.9

require github.com/dapr/cli v1.16.5

// dapr/cli v1.16.5 needs github.com/dapr/components-contrib v1.16.3 (through dapr/dapr v1.16.2),
// which the proxy refuses (403; so are v1.16.2 and v1.16.4). v1.16.1 is the newest it serves.
replace github.com/dapr/components-contrib => github.com/dapr/components-contrib v1.16.1
