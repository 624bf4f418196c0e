//go:build tools

// Package tools pins github.com/dapr/cli so that `go build github.com/dapr/cli` resolves it.
package tools

import _ "github.com/dapr/cli"
