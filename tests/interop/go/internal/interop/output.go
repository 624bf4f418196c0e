// Package interop holds what the three interop programs share: result output on the real
// stdout (Dapr's loggers write to fd 1, so fd 1 is pointed at stderr), trust anchor loading,
// and starting Dapr's own security provider (github.com/dapr/dapr/pkg/security).
package interop

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"
)

// ExitRefused is the exit code when the remote side answered with a gRPC error status.
const ExitRefused = 3

// ExitFailed is the exit code for any other failure (bad flags, TLS, parsing, verification).
const ExitFailed = 1

// Results is where JSON results go: the process's original stdout. Everything else written to
// fd 1 (Dapr's logrus loggers print there) lands on stderr instead.
var Results = os.Stdout

// TakeStdout keeps the original stdout for results and sends fd 1 to stderr.
func TakeStdout() {
	fd, err := unix.Dup(1)
	if err != nil {
		panic(err)
	}
	if err := unix.Dup2(2, 1); err != nil {
		panic(err)
	}
	Results = os.NewFile(uintptr(fd), "results")
}

// Emit prints one JSON document on a single line of the results stream.
func Emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(Results, string(b))
}

// ErrorResult is the JSON printed on failure: the gRPC code name ("InvalidArgument") and the
// status message when the error carries a status, plus the full Go error text.
type ErrorResult struct {
	Stage   string `json:"stage"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Text    string `json:"text"`
}

// Fail prints {"error": ...} and exits: ExitRefused when err wraps a gRPC status, else ExitFailed.
func Fail(stage string, err error) {
	res := ErrorResult{Stage: stage, Text: err.Error()}
	exit := ExitFailed
	// errors.As, not status.FromError: for a wrapped status FromError replaces the message
	// with the whole wrapped text, and the test wants Sentry's own description.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus() != nil {
		res.Code = se.GRPCStatus().Code().String()
		res.Message = se.GRPCStatus().Message()
		exit = ExitRefused
	}
	Emit(map[string]any{"error": res})
	fmt.Fprintf(os.Stderr, "%s: %v\n", stage, err)
	os.Exit(exit)
}
